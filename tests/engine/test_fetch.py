"""The guarded fetcher: address classification as pure cases, then real requests to a real server on 127.0.0.1.

Network rule: every request here is aimed at loopback; refused hosts are refused before any connection.
"""

from __future__ import annotations

import http.server
import ipaddress
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from engine.fetch import (
    BlockedAddress,
    DisallowedRedirect,
    DisallowedUrl,
    Guard,
    GuardedClient,
    IPAddress,
    ResponseTooLarge,
    classify,
    parse_host,
)

# --- pure: classify and parse_host ------------------------------------------------------------------------------

CLASSIFIED = [
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("127.0.0.1", "loopback"),
    ("127.255.0.9", "loopback"),
    ("169.254.169.254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("169.254.1.1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("fd00::", "private"),
    ("fc00::1", "private"),
    ("fe80::1", "link-local"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "documentation"),
    # IPv6 carrying an IPv4 address is classified by the IPv4 address
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:127.0.0.2", "loopback"),
    ("::ffff:169.254.169.254", "metadata"),
    ("::ffff:0:127.0.0.1", "loopback"),  # IPv4-translated
    ("::127.0.0.1", "loopback"),  # IPv4-compatible (deprecated)
    ("::8.8.8.8", "reserved"),  # IPv4-compatible of a public address: still not routable
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "metadata"),  # 6to4 of 169.254.169.254
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("64:ff9b::7f00:1", "loopback"),
    ("64:ff9b:1::1", "private"),  # local-use NAT64
    # public
    ("8.8.8.8", None),
    ("1.1.1.1", None),
    ("100.128.0.1", None),
    ("172.32.0.1", None),
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
    ("64:ff9b::808:808", None),
    ("2002:808:808::1", None),
]


@pytest.mark.parametrize(("address", "expected"), CLASSIFIED)
def test_classify(address: str, expected: str | None) -> None:
    assert classify(ipaddress.ip_address(address)) == expected


LOOPBACK_2_SPELLINGS = [
    "127.0.0.2",
    "2130706434",  # decimal
    "0x7f000002",  # hex
    "0X7F000002",
    "0177.0.0.2",  # octal
    "0x7f.0.0.2",  # mixed
    "127.2",  # short forms
    "127.0.2",
    "0x7f.2",
    "127.0.0.2.",  # trailing dot
]


@pytest.mark.parametrize("spelling", LOOPBACK_2_SPELLINGS)
def test_parse_host_reads_every_ipv4_spelling(spelling: str) -> None:
    assert parse_host(spelling) == ipaddress.IPv4Address("127.0.0.2")


@pytest.mark.parametrize("spelling", ["[::ffff:127.0.0.2]", "::ffff:127.0.0.2", "[::ffff:7f00:2]"])
def test_parse_host_reads_ipv6(spelling: str) -> None:
    address = parse_host(spelling)
    assert address == ipaddress.IPv6Address("::ffff:127.0.0.2")
    assert address is not None and classify(address) == "loopback"


@pytest.mark.parametrize(
    "name", ["example.com", "localhost", "1.2.3.4.5", "256.0.0.1", "1.16777216", "08.0.0.1", "0x1g", "١٢٧.0.0.1", ""]
)
def test_parse_host_leaves_names_alone(name: str) -> None:
    assert parse_host(name) is None


# --- the guard, with a fake resolver (no network) ---------------------------------------------------------------


@dataclass
class FakeResolver:
    answers: dict[str, list[str]]
    calls: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        return [ipaddress.ip_address(a) for a in self.answers[host]]


def test_a_name_with_one_blocked_address_among_public_ones_is_refused() -> None:
    resolver = FakeResolver({"mixed.example": ["8.8.8.8", "10.0.0.7"]})
    with pytest.raises(BlockedAddress) as caught:
        Guard(resolver=resolver).resolve("mixed.example", 80)
    assert (caught.value.host, str(caught.value.address), caught.value.range) == (
        "mixed.example",
        "10.0.0.7",
        "private",
    )
    assert "mixed.example" in str(caught.value) and "10.0.0.7" in str(caught.value) and "private" in str(caught.value)
    assert resolver.calls == ["mixed.example"]


def test_an_allowed_name_may_resolve_to_anything() -> None:
    resolver = FakeResolver({"internal.example": ["10.0.0.7"]})
    guard = Guard(allowed_hosts=("Internal.Example.",), resolver=resolver)
    assert guard.resolve("internal.example", 80) == (ipaddress.ip_address("10.0.0.7"),)


def test_public_addresses_pass() -> None:
    resolver = FakeResolver({"public.example": ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]})
    assert len(Guard(resolver=resolver).resolve("public.example", 443)) == 2


def test_a_literal_address_is_never_sent_to_the_resolver() -> None:
    resolver = FakeResolver({})
    with pytest.raises(BlockedAddress):
        Guard(resolver=resolver).resolve("0x7f000002", 80)
    assert resolver.calls == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://example.com/", "/relative"])
def test_check_url_refuses_other_schemes(url: str) -> None:
    with pytest.raises(DisallowedUrl):
        Guard().check_url(url)


# --- real requests to a real server on 127.0.0.1 ----------------------------------------------------------------


@dataclass
class Server:
    port: int
    paths: list[str]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


BIG = 64 * 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    paths: list[str]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        if self.path == "/ok":
            self._answer(200, b"hello", {"x-host-seen": self.headers.get("host", "")})
        elif self.path == "/big":
            self._answer(200, b"x" * BIG)
        elif self.path == "/big-chunked":
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            try:
                for _ in range(BIG // 1024):
                    self.wfile.write(b"400\r\n" + b"y" * 1024 + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            except ConnectionError:  # the client stopped reading at its cap, as it should
                pass
        elif self.path.startswith("/redirect?to="):
            self._answer(302, b"", {"location": self.path.removeprefix("/redirect?to=")})
        else:
            self._answer(404, b"no such path")

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def _running() -> Iterator[tuple[int, list[str]]]:
    paths: list[str] = []
    handler = type("Handler", (_Handler,), {"paths": paths})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], paths
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def server(_running: tuple[int, list[str]]) -> Server:
    port, paths = _running
    paths.clear()
    return Server(port, paths)


def allowing(*hosts: str, **options: object) -> GuardedClient:
    return GuardedClient(Guard(allowed_hosts=hosts), **options)  # type: ignore[arg-type]


def test_an_allowed_loopback_server_is_fetched(server: Server) -> None:
    with allowing("127.0.0.1") as client:
        response = client.request("GET", server.url("/ok"))
    assert (response.status_code, response.content) == (200, b"hello")
    assert response.headers["x-host-seen"] == f"127.0.0.1:{server.port}"
    assert server.paths == ["/ok"]


def test_the_same_server_not_allowed_is_refused_without_a_connection(server: Server) -> None:
    with allowing() as client, pytest.raises(BlockedAddress) as caught:
        client.request("GET", server.url("/ok"))
    assert caught.value.range == "loopback"
    assert server.paths == []


@pytest.mark.parametrize("spelling", [*LOOPBACK_2_SPELLINGS, "[::ffff:127.0.0.2]"])
def test_loopback_in_every_spelling_is_refused(server: Server, spelling: str) -> None:
    with allowing("127.0.0.1") as client, pytest.raises(BlockedAddress) as caught:
        client.request("GET", server.url("/ok", host=spelling))
    assert caught.value.range == "loopback"
    assert server.paths == []


def test_an_allowed_address_in_another_spelling_is_fetched_from_the_checked_address(server: Server) -> None:
    with allowing("127.0.0.1") as client:
        response = client.request("GET", server.url("/ok", host="2130706433"))
    assert response.content == b"hello"
    assert response.headers["x-host-seen"] == f"2130706433:{server.port}"  # the Host header keeps the name


def test_localhost_is_refused_unless_allowed(server: Server) -> None:
    with allowing("127.0.0.1") as client, pytest.raises(BlockedAddress):
        client.request("GET", server.url("/ok", host="localhost"))
    assert server.paths == []
    with allowing("localhost") as client:
        response = client.request("GET", server.url("/ok", host="localhost"))
    assert response.content == b"hello"
    assert response.headers["x-host-seen"] == f"localhost:{server.port}"


def test_a_name_is_resolved_once_and_connected_to_as_checked(server: Server) -> None:
    """The resolver answers loopback for a made-up name: the request reaches the server without any real DNS
    lookup of that name (it does not exist), so the connection went to the address the guard checked."""
    resolver = FakeResolver({"pinned.invalid": ["127.0.0.1"]})
    guard = Guard(allowed_hosts=("pinned.invalid",), resolver=resolver)
    with GuardedClient(guard) as client:
        response = client.request("GET", server.url("/ok", host="pinned.invalid"))
    assert response.headers["x-host-seen"] == f"pinned.invalid:{server.port}"
    assert resolver.calls == ["pinned.invalid"]


def test_a_redirect_is_returned_unfollowed_by_default(server: Server) -> None:
    with allowing("127.0.0.1") as client:
        response = client.request("GET", server.url("/redirect?to=/ok"))
    assert response.status_code == 302
    assert server.paths == ["/redirect?to=/ok"]


def test_a_redirect_to_the_same_host_is_followed(server: Server) -> None:
    with allowing("127.0.0.1", redirects="same-host") as client:
        response = client.request("GET", server.url("/redirect?to=/ok"))
    assert (response.status_code, response.content) == (200, b"hello")
    assert [r.status_code for r in response.history] == [302]


def test_a_redirect_to_a_blocked_host_is_refused(server: Server) -> None:
    target = server.url("/ok", host="127.0.0.2")
    with allowing("127.0.0.1", redirects="any-host") as client, pytest.raises(BlockedAddress) as caught:
        client.request("GET", server.url(f"/redirect?to={target}"))
    assert str(caught.value.address) == "127.0.0.2"
    assert server.paths == [f"/redirect?to={target}"]


def test_a_redirect_to_another_host_is_refused_when_asked(server: Server) -> None:
    target = server.url("/ok", host="localhost")
    with allowing("127.0.0.1", "localhost", redirects="same-host") as client, pytest.raises(DisallowedRedirect):
        client.request("GET", server.url(f"/redirect?to={target}"))
    assert server.paths == [f"/redirect?to={target}"]


def test_a_redirect_to_another_scheme_is_refused(server: Server) -> None:
    with allowing("127.0.0.1", redirects="any-host") as client, pytest.raises(DisallowedUrl):
        client.request("GET", server.url("/redirect?to=file:///etc/passwd"))


def test_a_redirect_loop_stops(server: Server) -> None:
    with allowing("127.0.0.1", redirects="same-host", max_redirects=2) as client, pytest.raises(DisallowedRedirect):
        client.request("GET", server.url("/redirect?to=/redirect?to=/redirect?to=/redirect?to=/ok"))
    assert len(server.paths) == 3


@pytest.mark.parametrize("path", ["/big", "/big-chunked"])
def test_a_response_over_the_cap_is_refused(server: Server, path: str) -> None:
    with allowing("127.0.0.1", max_bytes=BIG - 1) as client, pytest.raises(ResponseTooLarge):
        client.request("GET", server.url(path))
    with allowing("127.0.0.1", max_bytes=BIG) as client:
        assert len(client.request("GET", server.url(path)).content) == BIG


def test_a_streamed_response_over_the_cap_stops(server: Server) -> None:
    received = 0
    with (
        allowing("127.0.0.1", max_bytes=10_000) as client,
        client.stream("GET", server.url("/big-chunked")) as response,
        pytest.raises(ResponseTooLarge),
    ):
        for chunk in response.iter_bytes():
            received += len(chunk)
    assert received <= 10_000


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "data:text/plain,hi", "ws://127.0.0.1/"])
def test_a_non_http_scheme_is_refused(server: Server, url: str) -> None:
    with allowing("127.0.0.1") as client, pytest.raises(DisallowedUrl):
        client.request("GET", url)


def test_a_name_with_no_address_is_a_network_error() -> None:
    """A fake resolver: a real lookup of a missing name would leave loopback to ask a DNS server."""
    guard = Guard(resolver=FakeResolver({"nothing.invalid": []}))
    with GuardedClient(guard) as client, pytest.raises(httpx.ConnectError):
        client.request("GET", "http://nothing.invalid/")
