"""SSRF guard for outgoing webhooks (DESIGN.md, "SSRF refusals" and "Delivery rules").

`check_url` gives the API an early, static answer (400). `GuardedTransport` is the real
guard: it resolves the host when the request is sent, refuses if any answer is a refused
address, and then connects to that very address, so a DNS answer cannot change between
the check and the connection. Redirects are never followed by the caller; if one ever
is, the next request passes through this transport and is checked again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Resolves (host, port) to address strings; injectable so tests never touch real DNS.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class BlockedDestination(Exception):
    """The URL points somewhere Herald must not send to; str() is the reason for humans."""


_V4_RULES = [(ipaddress.IPv4Network(net), reason) for net, reason in [
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
]]

_V6_RULES = [(ipaddress.IPv6Network(net), reason) for net, reason in [
    ("::/128", "the unspecified address"),
    ("::1/128", "the loopback address"),
    ("fc00::/7", "a unique-local (private) address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
]]

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


def _static_check(url: httpx.URL, allow_hosts: Sequence[str]) -> IPAddress | None:
    """The checks that need no DNS; returns the literal address when the host is one."""
    if url.scheme not in ("http", "https"):
        raise BlockedDestination(f"refused: scheme {url.scheme or '(none)'!r} is not allowed; "
                                 "use http or https")
    if url.userinfo:
        raise BlockedDestination("refused: credentials in the URL are not allowed")
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
    _static_check(parsed, allow_hosts)


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that only connects to addresses it has just checked.

    Use with `httpx.AsyncClient(transport=GuardedTransport(allow_hosts), follow_redirects=False)`.
    Other keyword arguments (retries=0, verify=..., limits=...) go to the inner
    httpx.AsyncHTTPTransport. Passing a transport also keeps httpx from using proxies
    from the environment, which would connect on our behalf unchecked.
    """

    def __init__(self, allow_hosts: Sequence[str] = (), *, resolver: Resolver | None = None,
                 **transport_kwargs: Any) -> None:
        self._allow_hosts = list(allow_hosts)
        self._resolve = resolver or _getaddrinfo
        self._transport = httpx.AsyncHTTPTransport(**transport_kwargs)

    async def _checked_addresses(self, request: httpx.Request) -> list[IPAddress]:
        url = request.url
        literal = _static_check(url, self._allow_hosts)
        if literal is not None:
            return [literal]
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            answers = await self._resolve(host, port)
        except OSError as exc:  # socket.gaierror: a network error, retried like one
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
        addresses = list(dict.fromkeys(ipaddress.ip_address(a) for a in answers))
        if not addresses:
            raise httpx.ConnectError(f"cannot resolve {host}: no addresses", request=request)
        # Any refused answer refuses the host: the OS or a retry could pick that one.
        for ip in addresses:
            reason = blocked_reason(ip)
            if reason and not is_allowed(host, ip, self._allow_hosts):
                raise BlockedDestination(f"refused: {url.host} resolves to {ip}, {reason}")
        return addresses

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        addresses = await self._checked_addresses(request)
        hostname = request.url.raw_host.decode("ascii")
        extensions = dict(request.extensions)
        headers = request.headers.copy()  # keeps the original Host header
        if request.url.scheme == "https":
            if parse_ip(hostname) is None:
                # TLS must verify the name, not the address we connect to.
                extensions["sni_hostname"] = hostname.rstrip(".")
            # The inner pool is keyed by address, so a kept-alive connection verified for one
            # hostname could carry a later request for another name on the same address.
            headers["Connection"] = "close"
        error: httpx.ConnectError | None = None
        for ip in addresses:  # in resolver order, like the OS would try them
            pinned = httpx.Request(
                request.method, request.url.copy_with(host=str(ip)), headers=headers,
                stream=request.stream, extensions=extensions,
            )
            try:
                return await self._transport.handle_async_request(pinned)
            except httpx.ConnectError as exc:  # nothing was sent; try the next address
                error = exc
        assert error is not None
        raise error

    async def aclose(self) -> None:
        await self._transport.aclose()
