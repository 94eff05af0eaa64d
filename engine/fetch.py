"""The guarded outbound HTTP client: every fetch Tessera makes for a user (import ``source_url``, media ingest,
webhook delivery) goes through here, so a user cannot make the server reach its own network (SSRF).

The rule (ARCHITECTURE.md): resolve the host once, check every address it resolves to against the blocked ranges
unless the host is in the allow-list (``TESSERA_FETCH_ALLOWED_HOSTS``), and connect to the checked address.

How the connection is pinned to the checked address, without a second DNS lookup: ``_PinnedTransport`` is an httpx
transport that, for each request (so for each redirect hop), resolves and checks the host, then hands httpcore a
copy of the request whose URL names the checked IP. httpcore connects to the URL's host, so it connects to that IP
and never resolves the name. The copy keeps the ``Host`` header httpx derived from the original URL, and for https
sets httpcore's documented ``sni_hostname`` request extension to the name, which httpcore passes to
``ssl.SSLContext.wrap_socket(server_hostname=...)``: the TLS handshake sends the name and the certificate is
verified against the name, not the IP. httpcore pools connections by (scheme, IP, port), so the transport keeps one
pool per host name: a connection verified for one name is never reused for another name on the same IP.
(The alternative, a custom ``httpcore.NetworkBackend`` whose ``connect_tcp`` ignores the host, needs httpx's
private ``_pool`` or a hand-built pool; rewriting the URL uses public API only.)

Literal addresses are parsed here, not by the resolver, so that every spelling of an address (``2130706434``,
``0x7f000002``, ``0177.0.0.2``, ``127.2``, ``[::ffff:127.0.0.2]``, a trailing dot) is checked as what it means.

Errors, all ``ValueError`` (the request is wrong, nothing was fetched)::

    FetchRefused
    ├── BlockedAddress      the host is, or resolves to, an address in a blocked range (host, address, range)
    ├── DisallowedUrl       not http(s), no host, or not a URL httpx can send
    ├── DisallowedRedirect  a redirect to another host, or more redirects than allowed
    └── ResponseTooLarge    the response body passed ``max_bytes``

A host that does not resolve, or cannot be connected to, raises httpx's own ``ConnectError`` like any network
failure (a webhook retries it).

Example::

    client = GuardedClient(Guard(allowed_hosts=("127.0.0.1",)), max_bytes=1 << 20)
    response = client.request("GET", "https://example.com/data.csv")   # capped, checked, pinned
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[IPAddress]]
RedirectPolicy = Literal["none", "same-host", "any-host"]

ALLOWED_SCHEMES = frozenset({"http", "https"})

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order: the first range that holds the address names it. Metadata endpoints come before the ranges that
# contain them (169.254.0.0/16, 100.64.0.0/10, fc00::/7) so the message says what the address really is.
_BLOCKED_RANGES: tuple[tuple[_V4 | _V6, str], ...] = (
    (_V4("169.254.169.254/32"), "metadata"),  # AWS, GCP, Azure, OpenStack, DigitalOcean ...
    (_V4("100.100.100.200/32"), "metadata"),  # Alibaba Cloud
    (_V6("fd00:ec2::254/128"), "metadata"),  # AWS over IPv6
    (_V4("255.255.255.255/32"), "broadcast"),
    (_V4("0.0.0.0/8"), "unspecified"),  # "this network": 0.0.0.0 reaches the local host on Linux
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("100.64.0.0/10"), "carrier-grade NAT"),
    (_V4("192.0.0.0/24"), "reserved"),  # IETF protocol assignments
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("192.88.99.0/24"), "reserved"),  # the old 6to4 relay anycast
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (_V6("64:ff9b:1::/48"), "private"),  # local-use NAT64 (RFC 8215): the prefix is the operator's own
    (_V6("100::/64"), "reserved"),  # discard-only
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("fc00::/7"), "private"),  # unique local
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "private"),  # deprecated site-local
    (_V6("ff00::/8"), "multicast"),
)

_NAT64 = _V6("64:ff9b::/96")
_IPV4_COMPATIBLE = _V6("::/96")
_IPV4_TRANSLATED = _V6("::ffff:0:0:0/96")


class FetchRefused(ValueError):
    """An outbound fetch the guard refused before (or instead of) sending it."""


class BlockedAddress(FetchRefused):
    """The host is, or resolves to, an address in a blocked range and is not in the allow-list."""

    def __init__(self, host: str, address: IPAddress, range_name: str) -> None:
        self.host = host
        self.address = address
        self.range = range_name
        where = f"address {address}" if parse_host(host) == address else f"host {host!r}, which resolves to {address}"
        super().__init__(
            f"refused to fetch from {where}: a {range_name} address "
            "(add the host to TESSERA_FETCH_ALLOWED_HOSTS to allow it)"
        )


class DisallowedUrl(FetchRefused):
    """A URL the client will not fetch: not http(s), no host, or malformed."""


class DisallowedRedirect(FetchRefused):
    """A redirect the redirect policy does not follow."""


class ResponseTooLarge(FetchRefused):
    """The response body is larger than the client's ``max_bytes``."""

    def __init__(self, url: str, max_bytes: int) -> None:
        self.url = url
        self.max_bytes = max_bytes
        super().__init__(f"the response from {url} is larger than the limit of {max_bytes} bytes")


# --- pure: address classification and host parsing -------------------------------------------------------------


def classify(address: IPAddress) -> str | None:
    """The name of the blocked range that holds ``address``, or None for a public address.

    IPv6 addresses that carry an IPv4 address (IPv4-mapped, IPv4-translated, IPv4-compatible, 6to4, NAT64, Teredo)
    are classified by the IPv4 address they carry, since that is where the packets end up.

    >>> classify(ipaddress.ip_address("::ffff:10.0.0.1"))
    'private'
    """
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return classify(embedded) or ("reserved" if address in _IPV4_COMPATIBLE else None)
    for network, name in _BLOCKED_RANGES:
        if address.version == network.version and address in network:
            return name
    # Anything else IANA does not mark globally reachable (new special-purpose blocks, Teredo, ORCHID ...).
    return None if address.is_global else "reserved"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client: where the relay delivers
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _NAT64 or address in _IPV4_TRANSLATED:
        return low32
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are not IPv4-compatible addresses
        return low32
    return None


def parse_host(host: str) -> IPAddress | None:
    """The address a URL host means, in any spelling resolvers accept, or None when it is a name.

    Accepts what ``inet_aton`` and browsers accept for IPv4 (one to four dot-separated parts, each decimal, ``0x``
    hex or ``0`` octal, the last filling the remaining bytes), IPv6 with or without brackets, and a trailing dot.

    >>> parse_host("0x7f000002"), parse_host("127.2"), parse_host("[::ffff:127.0.0.2]")
    (IPv4Address('127.0.0.2'), IPv4Address('127.0.0.2'), IPv6Address('::ffff:7f00:2'))
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return _parse_ipv4(text[:-1] if text.endswith(".") else text)


def _parse_ipv4(text: str) -> ipaddress.IPv4Address | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = [_parse_ipv4_part(part) for part in parts]
    if any(number is None for number in numbers):
        return None
    values = [number for number in numbers if number is not None]
    *leading, last = values
    if any(value > 0xFF for value in leading) or last >= 1 << (8 * (5 - len(values))):
        return None
    total = last
    for index, value in enumerate(leading):
        total |= value << (8 * (3 - index))
    return ipaddress.IPv4Address(total)


def _parse_ipv4_part(part: str) -> int | None:
    if _HEX_PART.fullmatch(part):
        return int(part[2:] or "0", 16)
    if _OCTAL_PART.fullmatch(part):
        return int(part, 8)
    return int(part) if _DECIMAL_PART.fullmatch(part) else None


_HEX_PART = re.compile(r"0[xX][0-9a-fA-F]*")
_OCTAL_PART = re.compile(r"0[0-7]+")
_DECIMAL_PART = re.compile(r"0|[1-9][0-9]*")  # ASCII only: int() would also read other scripts' digits


def normalize_host(host: str) -> str:
    """A host name as the allow-list compares it: lower case, no brackets, no trailing dot."""
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text[:-1] if text.endswith(".") else text


# --- the guard -------------------------------------------------------------------------------------------------


def resolve_with_getaddrinfo(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in the resolver's order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise httpx.ConnectError(f"cannot resolve host {host!r}: {exc}") from exc
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _canonname, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class Guard:
    """The SSRF rule: a host in ``allowed_hosts`` may resolve to anything; any other host must resolve only to
    public addresses. Allow-list entries are names (compared case-insensitively, without a trailing dot) or
    addresses (compared by value, so ``0x7f000001`` matches an entry ``127.0.0.1``).

    >>> Guard(allowed_hosts=("127.0.0.1",)).resolve("127.0.0.1", 80)
    (IPv4Address('127.0.0.1'),)
    """

    allowed_hosts: tuple[str, ...] = ()
    resolver: Resolver = field(default=resolve_with_getaddrinfo, compare=False)

    def is_allowed(self, host: str) -> bool:
        name, address = normalize_host(host), parse_host(host)
        for entry in self.allowed_hosts:
            entry_address = parse_host(entry)
            if normalize_host(entry) == name or (address is not None and entry_address == address):
                return True
        return False

    def check_url(self, url: str) -> None:
        """Refuse, without any DNS lookup, a URL that can never be fetched: not http(s), no host, or a literal
        address in a blocked range. Names are checked when they are resolved, at each fetch."""
        try:
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname
        except ValueError as exc:
            raise DisallowedUrl(f"not a valid URL: {url!r} ({exc})") from exc
        check_scheme(parts.scheme, url)
        if not host:
            raise DisallowedUrl(f"the URL {url!r} has no host")
        address = parse_host(host)
        if address is not None and not self.is_allowed(host):
            _refuse_if_blocked(host, address)

    def resolve(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """Resolve ``host`` once and return its addresses, every one checked: the addresses to connect to."""
        address = parse_host(host)
        addresses = [address] if address is not None else self.resolver(host, port)
        if not addresses:
            raise httpx.ConnectError(f"host {host!r} resolves to no address")
        if not self.is_allowed(host):
            for each in addresses:
                _refuse_if_blocked(host, each)
        return tuple(addresses)


def check_scheme(scheme: str, url: str) -> None:
    if scheme.lower() not in ALLOWED_SCHEMES:
        raise DisallowedUrl(f"only http and https URLs can be fetched, not {scheme or 'a relative URL'}: {url!r}")


def _refuse_if_blocked(host: str, address: IPAddress) -> None:
    range_name = classify(address)
    if range_name is not None:
        raise BlockedAddress(host, address, range_name)


# --- the client ------------------------------------------------------------------------------------------------


class _PinnedTransport(httpx.BaseTransport):
    """Resolves and checks each request's host, then sends the request to the checked IP (see module docstring)."""

    def __init__(self, guard: Guard, verify: bool | str) -> None:
        self._guard = guard
        self._verify = verify
        self._pools: dict[str, httpx.HTTPTransport] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        check_scheme(url.scheme, str(url))
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        extensions = dict(request.extensions)
        if url.scheme == "https" and parse_host(host) is None:
            extensions["sni_hostname"] = host
        pool = self._pool_for(normalize_host(host))
        failure: httpx.ConnectError | None = None
        for address in self._guard.resolve(host, port):
            pinned = httpx.Request(
                request.method,
                url.copy_with(host=str(address)),
                headers=request.headers,  # keeps the Host header of the name
                stream=request.stream,
                extensions=extensions,
            )
            try:
                return pool.handle_request(pinned)
            except httpx.ConnectError as exc:  # nothing was sent: try the host's next checked address
                failure = exc
        assert failure is not None
        raise failure

    def _pool_for(self, host: str) -> httpx.HTTPTransport:
        if host not in self._pools:
            # trust_env=False: a proxy from the environment would connect to the name, not to the checked address.
            self._pools[host] = httpx.HTTPTransport(verify=self._verify, trust_env=False)
        return self._pools[host]

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class _CappedStream(httpx.SyncByteStream):
    """The body as received, stopped with ResponseTooLarge once it passes ``max_bytes``."""

    def __init__(self, inner: httpx.SyncByteStream, url: str, max_bytes: int) -> None:
        self._inner, self._url, self._max_bytes = inner, url, max_bytes

    def __iter__(self) -> Iterator[bytes]:
        received = 0
        for chunk in self._inner:
            received += len(chunk)
            if received > self._max_bytes:
                raise ResponseTooLarge(self._url, self._max_bytes)
            yield chunk

    def close(self) -> None:
        self._inner.close()


class GuardedClient:
    """An httpx client that only fetches what the guard allows, from the address it checked.

    ``redirects``: ``"none"`` returns a 3xx response as it is (the default: webhooks treat it as a failure);
    ``"same-host"`` follows redirects to the same host and refuses one to another host (imports);
    ``"any-host"`` follows any redirect. Every hop is checked again, up to ``max_redirects``.
    Bodies are capped at ``max_bytes`` as received; ``Accept-Encoding: identity`` is asked for, and ``request``
    also caps the decoded body, so a compressed body cannot expand past the cap.
    """

    def __init__(
        self,
        guard: Guard,
        *,
        timeout: float = 10.0,
        max_bytes: int = 10 * 1024 * 1024,
        redirects: RedirectPolicy = "none",
        max_redirects: int = 5,
        verify: bool | str = True,
    ) -> None:
        self.guard = guard
        self.max_bytes = max_bytes
        self.redirects: RedirectPolicy = redirects
        self.max_redirects = max_redirects
        self._client = httpx.Client(
            transport=_PinnedTransport(guard, verify),
            timeout=timeout,
            follow_redirects=False,  # followed here, so each hop is held to the redirect policy
            trust_env=False,
            headers={"accept-encoding": "identity"},
        )

    def __enter__(self) -> GuardedClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx.Response:
        """Send one request and read the whole body (at most ``max_bytes``, decoded)."""
        with self.stream(method, url, headers=headers, content=content) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > self.max_bytes:
                    raise ResponseTooLarge(str(response.url), self.max_bytes)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                content=bytes(body),
                request=response.request,
                history=response.history,
            )

    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> Iterator[httpx.Response]:
        """Send one request and yield the response unread; reading it past ``max_bytes`` raises ResponseTooLarge.

        >>> with client.stream("GET", url) as response:  # doctest: +SKIP
        ...     for chunk in response.iter_bytes(): ...
        """
        self.guard.check_url(url)
        try:
            request = self._client.build_request(method, url, headers=headers, content=content)
        except httpx.InvalidURL as exc:
            raise DisallowedUrl(f"not a URL that can be fetched: {url!r} ({exc})") from exc
        response = self._send_following(request)
        try:
            yield response
        finally:
            response.close()

    def _send_following(self, request: httpx.Request) -> httpx.Response:
        origin = normalize_host(request.url.host)
        history: list[httpx.Response] = []
        while True:
            response = self._client.send(request, stream=True)
            response.stream = _CappedStream(_as_sync(response.stream), str(request.url), self.max_bytes)
            response.history = list(history)
            next_request = response.next_request
            if self.redirects == "none" or not response.is_redirect or next_request is None:
                return response
            response.close()
            history.append(response)
            target = next_request.url
            check_scheme(target.scheme, str(target))
            if self.redirects == "same-host" and normalize_host(target.host) != origin:
                raise DisallowedRedirect(f"refused a redirect from {origin!r} to another host: {str(target)!r}")
            if len(history) > self.max_redirects:
                raise DisallowedRedirect(f"more than {self.max_redirects} redirects, the last to {str(target)!r}")
            self.guard.check_url(str(target))
            request = next_request


def _as_sync(stream: httpx.SyncByteStream | httpx.AsyncByteStream) -> httpx.SyncByteStream:
    if not isinstance(stream, httpx.SyncByteStream):
        raise TypeError("the guarded client is synchronous; its transport returned an async stream")
    return stream
