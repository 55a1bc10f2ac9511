"""The SSRF guard. Nothing here connects anywhere but 127.0.0.1 / ::1 (the `outgoing` fixture
fails any test that tries), and hostnames resolve through a fake DNS table."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

import httpx
import pytest

from activities.ssrf import GuardedTransport
from common.destinations import BlockedDestination, blocked_reason, check_url, is_allowed, parse_ip

FAKE_DNS = {
    "internal.example": ["10.1.2.3"],
    "mixed.example": ["93.184.216.34", "10.0.0.1"],
    "sneaky.example": ["127.0.0.1"],
    "hooks.internal": ["127.0.0.1"],
    "public.example": ["93.184.216.34"],
    "v6.example": ["2606:2800:220:1::"],
    "dual.example": ["2606:2800:220:1::", "93.184.216.34"],
}


async def fake_resolver(host: str, port: int) -> list[str]:
    try:
        return FAKE_DNS[host]
    except KeyError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None


class CountingServer:
    """A real HTTP server on 127.0.0.1 that counts TCP connections and echoes the Host header."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[str, str, dict[str, str]]] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, path, _ = head[0].split(" ")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:] if line)}
            await reader.readexactly(int(headers.get("content-length", 0)))
            self.requests.append((method, path, headers))
            if path == "/redirect":
                status, extra, body = "302 Found", "Location: http://169.254.169.254/latest/meta-data/\r\n", b""
            else:
                status, extra, body = "200 OK", "", headers["host"].encode()
            writer.write(
                f"HTTP/1.1 {status}\r\n{extra}Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        finally:
            writer.close()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def server():
    srv = CountingServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture(autouse=True)
def outgoing(monkeypatch):
    """Every request the guard lets through to the real transport; only loopback may be reached."""
    sent: list[httpx.Request] = []
    real = httpx.AsyncHTTPTransport.handle_async_request

    async def only_loopback(self, request: httpx.Request) -> httpx.Response:
        sent.append(request)
        assert request.url.host in ("127.0.0.1", "::1"), f"test tried to reach {request.url}"
        return await real(self, request)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", only_loopback)
    return sent


@pytest.fixture
def captured(monkeypatch):
    """Replaces the real transport with one that records requests and answers 204 offline."""
    sent: list[httpx.Request] = []

    async def record(self, request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", record)
    return sent


def client(allow_hosts=(), follow_redirects=False, resolver=fake_resolver) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=GuardedTransport(allow_hosts, resolver=resolver, retries=0),
        follow_redirects=follow_redirects,
        timeout=5,
    )


# (url, words the refusal must contain); {port} is the counting server's, so a guard
# that let these through would reach it.
STATIC_REFUSALS = [
    ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
    ("http://10.0.0.1/", "10.0.0.1 is a private address"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://169.254.10.1/", "link-local"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://0.0.0.0:{port}/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://192.0.2.1/", "special-purpose"),
    ("http://[::1]:{port}/", "loopback"),
    ("http://[::]:{port}/", "unspecified"),
    ("http://[fc00::1]/", "unique-local"),
    ("http://[fd00:ec2::254]/", "unique-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[::ffff:127.0.0.1]:{port}/", "IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("http://[::ffff:169.254.169.254]/", "IPv4-mapped form of 169.254.169.254, the cloud metadata"),
    ("http://[64:ff9b::a9fe:a9fe]/", "NAT64 form of 169.254.169.254"),
    ("http://[2002:a9fe:a9fe::]/", "6to4 form of 169.254.169.254"),
    ("http://[::7f00:1]:{port}/", "IPv4-compatible form of 127.0.0.1"),
    ("http://2130706433:{port}/", "2130706433 (127.0.0.1) is a loopback address"),
    ("http://0x7f.0.0.1:{port}/", "(127.0.0.1) is a loopback"),
    ("http://0x7f.1:{port}/", "(127.0.0.1) is a loopback"),
    ("http://017700000001:{port}/", "(127.0.0.1) is a loopback"),
    ("http://127.1:{port}/", "(127.0.0.1) is a loopback"),
    ("http://localhost:{port}/", "localhost is a loopback name"),
    ("https://admin.localhost/", "loopback name"),
    ("gopher://x", "scheme 'gopher' is not allowed"),
    ("http://user:pass@example.com/", "credentials"),
    ("http://user@example.com/", "credentials"),
]

# httpx.AsyncClient itself rejects these before any transport sees them.
MALFORMED = [
    ("file:///etc/passwd", "scheme 'file' is not allowed"),
    ("http:///nohost", "no host"),
    ("http://0177.0.0.1/", "invalid URL"),
]

# Refused only once the name is resolved, at send time.
RESOLVED_REFUSALS = [
    ("http://internal.example/hook", "internal.example resolves to 10.1.2.3, a private address"),
    ("http://mixed.example/hook", "mixed.example resolves to 10.0.0.1"),
    ("http://sneaky.example:{port}/", "sneaky.example resolves to 127.0.0.1, a loopback address"),
]


@pytest.mark.parametrize("url, reason", STATIC_REFUSALS + MALFORMED)
def test_check_url_refuses(url, reason):
    with pytest.raises(BlockedDestination, match=r"^refused: ") as refused:
        check_url(url.format(port=8080))
    assert reason in str(refused.value)


@pytest.mark.parametrize("url, reason", STATIC_REFUSALS + RESOLVED_REFUSALS)
async def test_transport_refuses_without_connecting(server, outgoing, url, reason):
    async with client() as http:
        with pytest.raises(BlockedDestination) as refused:
            await http.post(url.format(port=server.port), content=b"{}")
    assert reason in str(refused.value)
    assert server.connections == 0
    assert outgoing == []


@pytest.mark.parametrize("url, reason", MALFORMED[:2])
async def test_transport_refuses_what_a_client_would_not_send(outgoing, url, reason):
    with pytest.raises(BlockedDestination, match=reason):
        await GuardedTransport(resolver=fake_resolver).handle_async_request(httpx.Request("GET", url))
    assert outgoing == []


@pytest.mark.parametrize("url, _", RESOLVED_REFUSALS)
def test_hostnames_pass_the_static_check(url, _):
    check_url(url.format(port=8080))  # the API cannot know; the send refuses it


@pytest.mark.parametrize(
    "url, allow_hosts",
    [
        ("https://example.com/hook", []),
        ("http://93.184.216.34:8080/x", []),
        ("https://[2606:2800:220:1::]/", []),
        ("http://127.0.0.1:8080/", ["127.0.0.1/8"]),
        ("http://2130706433/", ["127.0.0.1"]),
        ("http://[::1]/", ["::1/128"]),
        ("http://localhost/", ["LOCALHOST"]),
        ("http://localhost/", ["127.0.0.1/8"]),
        ("http://10.20.30.40/", ["10.20.0.0/16"]),
    ],
)
def test_check_url_allows(url, allow_hosts):
    check_url(url, allow_hosts)


@pytest.mark.parametrize(
    "ip",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:2800:220:1::",
        "2a00:1450:4001:82a::200e",
        "::ffff:93.184.216.34",
        "64:ff9b::5db8:d822",
    ],
)
def test_public_addresses_are_not_refused(ip):
    assert blocked_reason(ipaddress.ip_address(ip)) is None


@pytest.mark.parametrize(
    "host, ip",
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10", "0.0.0.10"),
        ("[::1]", "::1"),
        ("example.com", None),
    ],
)
def test_parse_ip_reads_literals_as_the_os_does(host, ip):
    assert parse_ip(host) == (ip and ipaddress.ip_address(ip))


@pytest.mark.parametrize(
    "host, ip, allow_hosts, allowed",
    [
        ("hooks.example", None, ["Hooks.Example"], True),
        ("hooks.example.", "10.0.0.5", ["hooks.example"], True),
        ("sub.hooks.example", "10.0.0.5", ["hooks.example"], False),
        ("hooks.example", "10.0.0.5", ["10.0.0.0/8"], True),
        ("hooks.example", "10.0.0.5", ["10.0.0.5"], True),
        ("hooks.example", "10.0.0.5", ["10.0.0.6", "other.example"], False),
        ("localhost", "::1", ["127.0.0.1/8"], False),
        ("localhost", "::1", ["::1/128"], True),
        ("x.example", "::ffff:127.0.0.1", ["127.0.0.1/8"], True),
        ("x.example", "127.0.0.1", [], False),
    ],
)
def test_is_allowed(host, ip, allow_hosts, allowed):
    assert is_allowed(host, ip and ipaddress.ip_address(ip), allow_hosts) is allowed


async def test_allow_listed_loopback_by_cidr_reaches_the_server(server):
    async with client(["127.0.0.1/8"]) as http:
        literal = await http.post(f"http://127.0.0.1:{server.port}/hook", content=b"{}")
        named = await http.post(f"http://sneaky.example:{server.port}/hook", content=b"{}")
    assert (literal.status_code, literal.text) == (200, f"127.0.0.1:{server.port}")
    # Connected to the checked address, but the receiver still sees the name it was sent to.
    assert (named.status_code, named.text) == (200, f"sneaky.example:{server.port}")
    assert named.request.url.host == "sneaky.example"
    assert server.connections == 2


async def test_allow_listed_hostname_reaches_the_server(server):
    async with client(["hooks.internal"]) as http:
        answer = await http.get(f"http://hooks.internal:{server.port}/")
    assert (answer.status_code, answer.text) == (200, f"hooks.internal:{server.port}")


async def test_allow_listed_localhost_with_the_system_resolver(server, outgoing):
    # /etc/hosts may answer ::1 first, where nothing listens: the guard tries the next address.
    async with client(["localhost"], resolver=None) as http:
        answer = await http.get(f"http://localhost:{server.port}/")
    assert (answer.status_code, answer.text) == (200, f"localhost:{server.port}")
    assert server.connections == 1
    assert {r.url.host for r in outgoing} <= {"127.0.0.1", "::1"}


async def test_redirect_is_returned_not_followed(server, outgoing):
    async with client(["127.0.0.1/8"]) as http:
        answer = await http.post(f"http://127.0.0.1:{server.port}/redirect", content=b"{}")
    assert answer.status_code == 302
    assert answer.headers["location"] == "http://169.254.169.254/latest/meta-data/"
    assert [r.url.host for r in outgoing] == ["127.0.0.1"]
    assert server.connections == 1


async def test_a_followed_redirect_is_checked_too(server, outgoing):
    async with client(["127.0.0.1/8"], follow_redirects=True) as http:
        with pytest.raises(BlockedDestination, match=r"169\.254\.169\.254 is the cloud metadata address"):
            await http.get(f"http://127.0.0.1:{server.port}/redirect")
    assert [r.url.host for r in outgoing] == ["127.0.0.1"]


async def test_connects_to_the_checked_address_with_name_for_tls(captured):
    async with client() as http:
        answer = await http.post("https://public.example/hook?x=1", content=b"{}")
        await http.post("https://v6.example:8443/hook", content=b"{}")
        await http.post("http://93.184.216.34/plain", content=b"{}")
    assert answer.status_code == 204
    v4, v6, plain = captured
    assert str(v4.url) == "https://93.184.216.34/hook?x=1"
    assert v4.headers["host"] == "public.example"
    assert v4.extensions["sni_hostname"] == "public.example"
    assert v4.headers["connection"] == "close"  # no pooled TLS connection serves another name
    assert str(v6.url) == "https://[2606:2800:220:1::]:8443/hook"
    assert v6.headers["host"] == "v6.example:8443"
    assert v6.extensions["sni_hostname"] == "v6.example"
    assert str(plain.url) == "http://93.184.216.34/plain"
    assert "sni_hostname" not in plain.extensions


async def test_next_address_is_tried_when_one_cannot_connect(monkeypatch):
    tried: list[str] = []

    async def ipv6_unreachable(self, request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == "2606:2800:220:1::":
            raise httpx.ConnectError("Network is unreachable", request=request)
        return httpx.Response(204)

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", ipv6_unreachable)
    async with client() as http:
        answer = await http.post("http://dual.example/", content=b"{}")
    assert answer.status_code == 204
    assert tried == ["2606:2800:220:1::", "93.184.216.34"]


async def test_unresolvable_host_is_a_retryable_connect_error(outgoing):
    async with client() as http:
        with pytest.raises(httpx.ConnectError, match=r"cannot resolve nowhere\.example"):
            await http.post("http://nowhere.example/", content=b"{}")
    assert outgoing == []
