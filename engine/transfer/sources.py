"""Where an import reads from: ``http(s)://`` (through ``engine.fetch``'s guarded client: SSRF rules, same-host
redirects only, the size cap), ``file://`` under ``TESSERA_IMPORT_DIR`` only, or a file uploaded with the request.

A source is a readable byte stream, streamed (a download is never held whole), decompressed when its name or
content type says gzip or zip, with the decompressed size capped (a zip bomb stops at the cap, having read no
more). ``consumed()`` counts the raw bytes read, for progress.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import unquote, urlsplit

import httpx
import pyarrow as pa

from engine.config import Settings
from engine.errors import ImportSourceError, SourceTooLarge
from engine.fetch import FetchRefused, Guard, GuardedClient, ResponseTooLarge

_GZIP_TYPES = ("application/gzip", "application/x-gzip")
_ZIP_TYPES = ("application/zip", "application/x-zip-compressed")
_CHUNK = 1 << 20


@dataclass
class Source:
    file: BinaryIO  # the content, decompressed
    name: str  # a file name (a compression suffix removed), for the format's extension
    media_type: str | None
    total_bytes: int | None  # the raw source's size, when known
    _counter: _Counting | _Mapped | None = None
    _close: list[Any] = field(default_factory=list)

    def consumed(self) -> int:
        return self._counter.count if self._counter is not None else 0

    def close(self) -> None:
        for closing in reversed(self._close):
            with contextlib.suppress(Exception):
                closing()
        self._close.clear()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_url(url: str, settings: Settings) -> None:
    """The scheme is one imports take, and a ``file://`` path lies under the import directory."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        return
    if scheme == "file":
        _local_path(url, settings)
        return
    raise ImportSourceError(
        url, f"scheme {scheme or '(none)'} is not supported: use http(s)://, file:// or upload the file"
    )


def open_source(url: str, settings: Settings, *, upload: str | None = None, upload_name: str | None = None) -> Source:
    """The source to read: ``upload`` (a local file) if given, else ``url``."""
    if upload is not None:
        return _local(upload, upload_name or os.path.basename(upload), upload_name or upload, settings)
    check_url(url, settings)
    if urlsplit(url).scheme.lower() == "file":
        path = _local_path(url, settings)
        return _local(path, os.path.basename(path), url, settings)
    return _download(url, settings)


def _local_path(url: str, settings: Settings) -> str:
    if settings.import_dir is None:
        raise ImportSourceError(url, "file:// imports are off: set TESSERA_IMPORT_DIR to the directory they may read")
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ImportSourceError(url, "a file:// URL names a local path (file:///path)")
    path = os.path.realpath(unquote(parts.path))
    root = os.path.realpath(settings.import_dir)
    if os.path.commonpath([path, root]) != root:
        raise ImportSourceError(url, f"file:// imports must be under TESSERA_IMPORT_DIR ({root})")
    if not os.path.isfile(path):
        raise ImportSourceError(url, "no such file")
    return path


def _local(path: str, name: str, shown: str, settings: Settings) -> Source:
    try:
        raw = open(path, "rb")  # noqa: SIM115 (the Source closes it)
    except OSError as exc:
        raise ImportSourceError(shown, f"cannot be opened: {exc.strerror}") from None
    size = os.fstat(raw.fileno()).st_size
    if size > settings.import_max_bytes:
        raw.close()
        raise SourceTooLarge(shown, "the file", settings.import_max_bytes)
    lowered = name.lower()
    if not lowered.endswith((".gz", ".zip")):  # read natively (memory-mapped): pyarrow's readers skip Python
        raw.close()
        mapped = pa.memory_map(path, "r")
        return Source(mapped, name, None, size, _Mapped(mapped), [mapped.close])  # type: ignore[arg-type]
    counter = _Counting(raw, shown, settings.import_max_bytes)
    return _decompressed(counter, name, None, size, shown, settings, [raw.close], local=True)


def _download(url: str, settings: Settings) -> Source:
    client = GuardedClient(
        Guard(allowed_hosts=settings.fetch_allowed_hosts),
        timeout=settings.fetch_timeout_seconds,
        max_bytes=settings.import_max_bytes,
        redirects="same-host",
    )
    closing: list[Any] = [client.close]
    try:
        stream = client.stream("GET", url)
        response = _fetched(url, settings, lambda: stream.__enter__())
        closing.append(lambda: stream.__exit__(None, None, None))
        if response.status_code >= 400:
            raise ImportSourceError(url, f"answered {response.status_code} {response.reason_phrase}")
        length = response.headers.get("content-length")
        media_type = response.headers.get("content-type", "").split(";")[0].strip().lower() or None
        name = os.path.basename(unquote(urlsplit(str(response.url)).path)) or "download"
        body = _ResponseReader(response.iter_bytes(), url, settings)
        counter = _Counting(io.BufferedReader(body, _CHUNK), url, settings.import_max_bytes)
        return _decompressed(
            counter, name, media_type, int(length) if length and length.isdigit() else None, url, settings, closing
        )
    except BaseException:
        for close in reversed(closing):
            with contextlib.suppress(Exception):
                close()
        raise


def _fetched(url: str, settings: Settings, call: Any) -> Any:
    """``call()``, with fetch failures as import errors that name the source."""
    try:
        return call()
    except ResponseTooLarge:
        raise SourceTooLarge(url, "the download", settings.import_max_bytes) from None
    except FetchRefused as exc:
        raise ImportSourceError(url, str(exc)) from None
    except httpx.TimeoutException:
        raise ImportSourceError(url, f"timed out after {settings.fetch_timeout_seconds:g} s") from None
    except httpx.HTTPError as exc:
        raise ImportSourceError(url, f"could not be fetched: {exc}") from None


def _decompressed(
    raw: _Counting,
    name: str,
    media_type: str | None,
    size: int | None,
    shown: str,
    settings: Settings,
    closing: list[Any],
    local: bool = False,
) -> Source:
    cap = settings.import_max_decompressed_bytes
    lowered = name.lower()
    if lowered.endswith(".gz") or media_type in _GZIP_TYPES:
        inner = _Capped(_Gunzip(raw, shown), shown, cap)
        return Source(
            io.BufferedReader(inner, _CHUNK),
            name[:-3] if lowered.endswith(".gz") else name,
            media_type,
            size,
            raw,
            closing,
        )  # type: ignore[arg-type]
    if lowered.endswith(".zip") or media_type in _ZIP_TYPES:
        seekable: Any = raw
        if not local:  # a download: zip's directory is at its end, so keep it in a file first
            spooled = tempfile.TemporaryFile()  # noqa: SIM115 (the Source closes it)
            closing.append(spooled.close)
            while chunk := raw.read(_CHUNK):
                spooled.write(chunk)
            spooled.seek(0)
            seekable = spooled
        try:
            archive = zipfile.ZipFile(seekable)
        except zipfile.BadZipFile as exc:
            raise ImportSourceError(shown, f"not a zip file ({exc})") from None
        closing.append(archive.close)
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) != 1:
            raise ImportSourceError(shown, f"a zip source must hold exactly one file, not {len(members)}")
        if members[0].file_size > cap:
            raise SourceTooLarge(shown, "the decompressed size", cap)
        member = archive.open(members[0])
        closing.append(member.close)
        inner = _Capped(_ZipMember(member, shown), shown, cap)
        return Source(
            io.BufferedReader(inner, _CHUNK), os.path.basename(members[0].filename), media_type, size, raw, closing
        )  # type: ignore[arg-type]
    return Source(raw, name, media_type, size, raw, closing)  # type: ignore[arg-type]


# -- streams ------------------------------------------------------------------------------------------------------
class _Counting(io.RawIOBase):
    """Reads through ``inner``, counting the bytes and stopping past ``cap``."""

    def __init__(self, inner: Any, shown: str, cap: int) -> None:
        self.inner, self.shown, self.cap, self.count = inner, shown, cap, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(getattr(self.inner, "seekable", lambda: False)())

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self.inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self.inner.tell())

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.cap:
            raise SourceTooLarge(self.shown, "the source", self.cap)
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.inner.read(size) if size is not None and size >= 0 else self.inner.read()
        self.count += len(data)
        if self.count > self.cap:
            raise SourceTooLarge(self.shown, "the source", self.cap)
        return data


class _Mapped:
    """The progress of a memory-mapped file: its read position."""

    def __init__(self, mapped: Any) -> None:
        self.mapped = mapped

    @property
    def count(self) -> int:
        return 0 if self.mapped.closed else int(self.mapped.tell())


class _ResponseReader(io.RawIOBase):
    """An httpx response body as a raw stream; errors while reading become import errors."""

    def __init__(self, chunks: Iterator[bytes], url: str, settings: Settings) -> None:
        self.chunks, self.url, self.settings = chunks, url, settings
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            try:
                self.pending = next(self.chunks)
            except StopIteration:
                return 0
            except ResponseTooLarge:
                raise SourceTooLarge(self.url, "the download", self.settings.import_max_bytes) from None
            except httpx.TimeoutException:
                timeout = self.settings.fetch_timeout_seconds
                raise ImportSourceError(self.url, f"timed out after {timeout:g} s while reading") from None
            except httpx.HTTPError as exc:
                raise ImportSourceError(self.url, f"the download broke off: {exc}") from None
        n = min(len(buffer), len(self.pending))
        buffer[:n], self.pending = self.pending[:n], self.pending[n:]
        return n


class _Gunzip(io.RawIOBase):
    """gzip decompressed as it is read (several members, as ``gzip`` writes them, included)."""

    def __init__(self, raw: Any, shown: str) -> None:
        self.raw, self.shown = raw, shown
        self.z = zlib.decompressobj(wbits=31)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            if self.z.eof:  # the end of a member: another may follow (``gzip`` writes several for appends)
                rest = self.z.unused_data or self.raw.read(_CHUNK)
                if not rest:
                    return 0
                self.z, self.pending = zlib.decompressobj(wbits=31), rest
            given = self.z.unconsumed_tail or self.pending or self.raw.read(_CHUNK)
            self.pending = b""
            if not given:
                raise ImportSourceError(self.shown, "truncated gzip: the data ends inside the compressed stream")
            try:
                data = self.z.decompress(given, len(buffer))
            except zlib.error as exc:
                raise ImportSourceError(self.shown, f"not valid gzip data ({exc})") from None
            if data:
                buffer[: len(data)] = data
                return len(data)


class _ZipMember(io.RawIOBase):
    def __init__(self, member: Any, shown: str) -> None:
        self.member, self.shown = member, shown

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self.member.read(len(buffer))
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ImportSourceError(self.shown, f"the zip is damaged ({exc})") from None
        buffer[: len(data)] = data
        return len(data)


class _Capped(io.RawIOBase):
    """Decompressed bytes, refused past ``cap``: a bomb stops having produced ``cap`` bytes."""

    def __init__(self, inner: io.RawIOBase, shown: str, cap: int) -> None:
        self.inner, self.shown, self.cap, self.count = inner, shown, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.inner.readinto(buffer) or 0
        self.count += n
        if self.count > self.cap:
            raise SourceTooLarge(self.shown, "the decompressed size", self.cap)
        return n


__all__ = ["Source", "check_url", "open_source"]
