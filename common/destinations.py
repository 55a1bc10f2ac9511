"""Where Herald may send: the address rules of the SSRF guard, with no I/O.

The API uses `check_url` for an early, static answer (400); the webhook activity's
`activities.ssrf.GuardedTransport` applies the same rules to every resolved address at send time.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class BlockedDestination(Exception):
    """The URL points somewhere Herald must not send to; str() is the reason for humans."""


_V4_RULES = [
    (ipaddress.IPv4Network(net), reason)
    for net, reason in [
        ("169.254.169.254/32", "the cloud metadata address"),  # before link-local: clearer reason
        ("0.0.0.0/8", "an unspecified ('this network') address"),  # Linux connects 0.x to itself
        ("127.0.0.0/8", "a loopback address"),
        ("10.0.0.0/8", "a private address"),
        ("172.16.0.0/12", "a private address"),
        ("192.168.0.0/16", "a private address"),
        ("169.254.0.0/16", "a link-local address"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT) address"),
        ("224.0.0.0/4", "a multicast address"),
        ("255.255.255.255/32", "the broadcast address"),
        ("240.0.0.0/4", "a reserved address"),
    ]
]

_V6_RULES = [
    (ipaddress.IPv6Network(net), reason)
    for net, reason in [
        ("::/128", "the unspecified address"),
        ("::1/128", "the loopback address"),
        ("fc00::/7", "a unique-local (private) address"),
        ("fe80::/10", "a link-local address"),
        ("fec0::/10", "a site-local address"),
        ("ff00::/8", "a multicast address"),
        ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ]
]

_V4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_v4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address reaches through a translation or tunnel, if any."""
    if ip.ipv4_mapped:
        return "an IPv4-mapped", ip.ipv4_mapped
    if ip in _NAT64:
        return "a NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour:
        return "a 6to4", ip.sixtofour
    if ip in _V4_COMPATIBLE and int(ip) > 1:  # :: and ::1 are not embeddings
        return "an IPv4-compatible", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress) -> str | None:
    """Why `ip` must not be contacted (e.g. "a private address"), or None if it is public."""
    for net, reason in _V4_RULES if ip.version == 4 else _V6_RULES:
        if ip in net:
            return reason
    if ip.version == 6 and (embedded := _embedded_v4(ip)):
        kind, v4 = embedded
        inner = blocked_reason(v4)
        # A public IPv4 behind NAT64 is how IPv6-only networks reach the world: allowed.
        return f"{kind} form of {v4}, {inner}" if inner else None
    # The named classes above give readable reasons; this catches every other special range
    # (documentation, benchmarking, Teredo, ...).
    if ip.is_reserved or not ip.is_global:
        return "a special-purpose (non-public) address"
    return None


def _normal_host(host: str) -> str:
    return host.lower().rstrip(".")


def is_allowed(host: str, ip: IPAddress | None, allow_hosts: Sequence[str]) -> bool:
    """HERALD_WEBHOOK_ALLOW_HOSTS: an entry matches the hostname exactly or `ip` by CIDR."""
    candidates = [] if ip is None else [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_v4(ip)):
        candidates.append(embedded[1])
    for entry in allow_hosts:
        entry = entry.strip()
        try:
            net = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            if _normal_host(entry) == _normal_host(host.strip("[]")):
                return True
            continue
        if any(c in net for c in candidates):
            return True
    return False


def parse_ip(host: str) -> IPAddress | None:
    """The address a literal host means to the OS resolver, or None for a hostname.

    inet_aton is what getaddrinfo uses for IPv4 literals, so it accepts the same
    decimal, octal, hex and short forms (2130706433, 0x7f.1, 017700000001, 127.1).
    """
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _is_localhost_name(host: str) -> bool:
    host = _normal_host(host)
    return host == "localhost" or host.endswith(".localhost")


def static_check(url: httpx.URL, allow_hosts: Sequence[str]) -> IPAddress | None:
    """The checks that need no DNS; returns the literal address when the host is one."""
    if url.scheme not in ("http", "https"):
        raise BlockedDestination(f"refused: scheme {url.scheme or '(none)'!r} is not allowed; use http or https")
    if url.userinfo:
        raise BlockedDestination("refused: credentials in the URL are not allowed")
    if url.port is not None and not 1 <= url.port <= 65535:
        raise BlockedDestination(f"refused: invalid URL (port {url.port} is not in 1-65535)")
    host = url.raw_host.decode("ascii")  # IDNA form: what DNS and the allow-list see
    if not host:
        raise BlockedDestination("refused: the URL has no host")
    ip = parse_ip(host)
    if ip is not None:
        reason = blocked_reason(ip)
        if reason and not is_allowed(host, ip, allow_hosts):
            shown = str(ip) if str(ip) == host else f"{host} ({ip})"
            raise BlockedDestination(f"refused: {shown} is {reason}")
        return ip
    # Resolvers answer these with loopback without asking DNS (RFC 6761).
    loopbacks = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
    if _is_localhost_name(host) and not any(is_allowed(host, lo, allow_hosts) for lo in loopbacks):
        raise BlockedDestination(f"refused: {host} is a loopback name")
    return None


def check_url(url: str, allow_hosts: Sequence[str] = ()) -> None:
    """Static checks for the API; raises BlockedDestination with a message fit for a 400."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise BlockedDestination(f"refused: invalid URL ({exc})") from None
    static_check(parsed, allow_hosts)
