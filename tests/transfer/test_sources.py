"""Import sources on real files and a real loopback HTTP server: the import directory rule, SSRF refusals (only
loopback addresses off the allow-list are ever aimed at), time-outs, size caps and decompression bombs."""

from __future__ import annotations

import gzip
import http.server
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.config import Settings
from engine.errors import ImportSourceError, SourceTooLarge
from engine.transfer.sources import open_source


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, dict[str, Any]]]:
    routes: dict[str, Any] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            route = routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            if isinstance(route, tuple):  # ("redirect", location)
                self.send_response(302)
                self.send_header("Location", route[1])
                self.end_headers()
                return
            if callable(route):
                route()
                route = b"late"
            self.send_response(200)
            self.send_header("Content-Length", str(len(route)))
            self.end_headers()
            self.wfile.write(route)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", routes
    httpd.shutdown()


def settings(tmp_path: Path, **changes: Any) -> Settings:
    base = {
        "data_dir": str(tmp_path / "data"),
        "import_dir": str(tmp_path / "in"),
        "fetch_allowed_hosts": ("127.0.0.1",),
    }
    (tmp_path / "in").mkdir(exist_ok=True)
    return Settings(**{**base, **changes})


def read(url: str, s: Settings) -> bytes:
    with open_source(url, s) as source:
        return source.file.read()


def test_file_urls_only_under_the_import_dir(tmp_path: Path) -> None:
    s = settings(tmp_path)
    (tmp_path / "in" / "a.csv").write_bytes(b"x\n1\n")
    (tmp_path / "secret.csv").write_bytes(b"no")
    (tmp_path / "in" / "link.csv").symlink_to(tmp_path / "secret.csv")
    assert read(f"file://{tmp_path}/in/a.csv", s) == b"x\n1\n"
    for bad in (
        f"file://{tmp_path}/secret.csv",
        f"file://{tmp_path}/in/../secret.csv",
        f"file://{tmp_path}/in/link.csv",
    ):
        with pytest.raises(ImportSourceError, match="TESSERA_IMPORT_DIR"):
            read(bad, s)
    with pytest.raises(ImportSourceError, match="imports are off"):
        read(f"file://{tmp_path}/in/a.csv", settings(tmp_path, import_dir=None))
    with pytest.raises(ImportSourceError, match="scheme ftp"):
        read("ftp://127.0.0.1/a.csv", s)


def test_http_streams_and_counts(tmp_path: Path, server: tuple[str, dict[str, Any]]) -> None:
    base, routes = server
    routes["/big.csv"] = b"x" * 5_000_000
    with open_source(f"{base}/big.csv", settings(tmp_path)) as source:
        assert source.total_bytes == 5_000_000 and source.name == "big.csv"
        first = source.file.read(1000)
        assert len(first) == 1000 and source.consumed() < 5_000_000  # streamed, not read whole
        assert len(first + source.file.read()) == 5_000_000
        assert source.consumed() == 5_000_000
    with pytest.raises(ImportSourceError, match="404"):
        read(f"{base}/nope.csv", settings(tmp_path))


def test_time_outs_and_caps(tmp_path: Path, server: tuple[str, dict[str, Any]]) -> None:
    base, routes = server
    routes["/slow.csv"] = lambda: time.sleep(2)
    with pytest.raises(ImportSourceError, match="timed out"):
        read(f"{base}/slow.csv", settings(tmp_path, fetch_timeout_seconds=0.3))
    routes["/ten.csv"] = b"y" * 10_000
    with pytest.raises(SourceTooLarge):
        read(f"{base}/ten.csv", settings(tmp_path, import_max_bytes=1000))


def test_redirects_and_ssrf(tmp_path: Path, server: tuple[str, dict[str, Any]]) -> None:
    base, routes = server
    routes["/a.csv"] = b"ok"
    routes["/moved"] = ("redirect", "/a.csv")
    routes["/away"] = ("redirect", "http://127.0.0.2:9/a.csv")
    assert read(f"{base}/moved", settings(tmp_path)) == b"ok"
    with pytest.raises(ImportSourceError, match="another host"):
        read(f"{base}/away", settings(tmp_path))
    port = base.rsplit(":", 1)[1]
    with pytest.raises(ImportSourceError, match="loopback"):
        read(f"http://127.0.0.1:{port}/a.csv", settings(tmp_path, fetch_allowed_hosts=()))


def test_gzip_and_zip(tmp_path: Path, server: tuple[str, dict[str, Any]]) -> None:
    base, routes = server
    s = settings(tmp_path)
    routes["/p.csv.gz"] = gzip.compress(b"a\n1\n") + gzip.compress(b"2\n")  # two members, as appends make
    assert read(f"{base}/p.csv.gz", s) == b"a\n1\n2\n"
    routes["/cut.csv.gz"] = gzip.compress(b"a\n" * 1000)[:-30]
    with pytest.raises(ImportSourceError, match="truncated gzip"):
        read(f"{base}/cut.csv.gz", s)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as z:
        z.writestr("inner/people.csv", b"a\n1\n")
    routes["/p.zip"] = packed.getvalue()
    with open_source(f"{base}/p.zip", s) as source:
        assert source.name == "people.csv" and source.file.read() == b"a\n1\n"
    two = io.BytesIO()
    with zipfile.ZipFile(two, "w") as z:
        z.writestr("a.csv", b"1")
        z.writestr("b.csv", b"2")
    (tmp_path / "in" / "two.zip").write_bytes(two.getvalue())
    with pytest.raises(ImportSourceError, match="exactly one file"):
        read(f"file://{tmp_path}/in/two.zip", s)


def test_bombs_stop_at_the_cap(tmp_path: Path) -> None:
    s = settings(tmp_path, import_max_decompressed_bytes=1_000_000)
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.csv", b"\0" * 50_000_000)
    (tmp_path / "in" / "bomb.zip").write_bytes(bomb.getvalue())
    with pytest.raises(SourceTooLarge, match="decompressed"):
        read(f"file://{tmp_path}/in/bomb.zip", s)
    (tmp_path / "in" / "bomb.csv.gz").write_bytes(gzip.compress(b"\0" * 50_000_000))
    with pytest.raises(SourceTooLarge, match="decompressed"):
        read(f"file://{tmp_path}/in/bomb.csv.gz", s)
