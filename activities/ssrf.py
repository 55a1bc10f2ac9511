"""SSRF guard for outgoing webhooks: resolve at send time, refuse, connect to the checked address.

`GuardedTransport` resolves the host when the request is sent, refuses if any answer is a
refused address (rules in `common.destinations`), and then connects to that very address, so
a DNS answer cannot change between the check and the connection. Redirects are never followed
by the caller; if one ever is, the next request passes through this transport and is checked again.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

from common.destinations import BlockedDestination, IPAddress, blocked_reason, is_allowed, parse_ip, static_check

# Resolves (host, port) to address strings; injectable so tests never touch real DNS.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]  # (an IPv6 sockaddr is typed with ints in it)


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that only connects to addresses it has just checked.

    Use with `httpx.AsyncClient(transport=GuardedTransport(allow_hosts), follow_redirects=False)`.
    Other keyword arguments (retries=0, verify=..., limits=...) go to the inner
    httpx.AsyncHTTPTransport. Passing a transport also keeps httpx from using proxies
    from the environment, which would connect on our behalf unchecked.
    """

    def __init__(
        self, allow_hosts: Sequence[str] = (), *, resolver: Resolver | None = None, **transport_kwargs: Any
    ) -> None:
        self._allow_hosts = list(allow_hosts)
        self._resolve = resolver or _getaddrinfo
        self._transport = httpx.AsyncHTTPTransport(**transport_kwargs)

    async def _checked_addresses(self, request: httpx.Request) -> list[IPAddress]:
        url = request.url
        literal = static_check(url, self._allow_hosts)
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
                request.method,
                request.url.copy_with(host=str(ip)),
                headers=headers,
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return await self._transport.handle_async_request(pinned)
            except httpx.ConnectError as exc:  # nothing was sent; try the next address
                error = exc
        assert error is not None
        raise error

    async def aclose(self) -> None:
        await self._transport.aclose()
