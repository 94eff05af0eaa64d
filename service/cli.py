"""The ``tessera`` command: ``tessera serve`` starts the engine and the REST service on one machine;
``tessera plugins`` lists what the installed plugins register; ``tessera jobs`` lists, shows, watches and cancels
the jobs of a running server (``service.jobs_cli``).

Every flag can also come from a ``TESSERA_*`` environment variable (``TESSERA_PORT=9000``); flags win.

    tessera serve                                  # http://127.0.0.1:8000, data in ./tessera-data, local Ray
    tessera serve --host 0.0.0.0 --auth required   # prints an administrator key at the first start
    tessera serve --allowed-hosts tessera.local --cors-origins http://localhost:3000
    tessera plugins --json                         # functions, UDF languages ... and the plugin providing each
    tessera jobs watch 3f2a...                     # a live progress bar until the job ends (TESSERA_URL)
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from collections.abc import Sequence
from typing import Any, Literal

import uvicorn

from engine import Settings
from engine.errors import PluginError
from engine.registry import Registry
from plugins.listing import render
from service import jobs_cli
from service.auth.keys import valid_admin_key
from service.middleware import cors_origins, trusted_hosts

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tessera", description="Tessera: a data engine with a REST front end.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the REST service (and a local Ray unless --ray-address)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1; TESSERA_HOST)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000; TESSERA_PORT)")
    serve.add_argument("--data-dir", help="where tables are stored (default ./tessera-data; TESSERA_DATA_DIR)")
    serve.add_argument("--ray-address", help='Ray cluster to join, e.g. "auto" (default: start a local Ray)')
    serve.add_argument("--shards", type=int, help="default shards per table (default: one per CPU)")
    serve.add_argument("--auth", choices=["open", "required"], help="open (default, loopback only) or required")
    serve.add_argument(
        "--admin-key",
        help="an administrator API key to accept (16+ characters; TESSERA_ADMIN_KEY). In required mode without "
        "one, the first start prints a new administrator key once",
    )
    serve.add_argument(
        "--allow-open-remote",
        action="store_true",
        default=None,
        help="allow open mode (no key needed) on a non-loopback --host (TESSERA_ALLOW_OPEN_REMOTE)",
    )
    serve.add_argument(
        "--rate-limits", choices=["on", "off"], help="per-key rate limits (default on; off for benchmarks)"
    )
    serve.add_argument("--num-cpus", type=int, help="CPUs of a locally started Ray (default: all)")
    serve.add_argument(
        "--allowed-hosts",
        type=Settings.split_list,
        help="comma-separated Host names to answer besides loopback names and --host, '*.example.com' for "
        "subdomains (TESSERA_ALLOWED_HOSTS; in required mode, setting it turns the Host check on)",
    )
    serve.add_argument(
        "--cors-origins",
        type=Settings.split_list,
        help="comma-separated browser origins allowed to call the API, e.g. http://localhost:3000 "
        "(TESSERA_CORS_ORIGINS; default: CORS off)",
    )
    listing = commands.add_parser("plugins", help="list the registered functions, UDF languages, formats ...")
    listing.add_argument("--json", action="store_true", help="print JSON: {kind: [{name, plugin, module, ...}]}")
    jobs_cli.configure(commands.add_parser("jobs", help="list, show, watch or cancel the jobs of a running server"))
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_from(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    """Settings from ``TESSERA_*`` variables with the given flags on top; ``ValueError`` if they do not make sense."""
    flags: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "data_dir": args.data_dir,
        "ray_address": args.ray_address,
        "shards": args.shards,
        "auth": args.auth,
        "admin_key": args.admin_key,
        "allow_open_remote": args.allow_open_remote,
        "rate_limits": args.rate_limits,
        "num_cpus": args.num_cpus,
        "allowed_hosts": args.allowed_hosts,
        "cors_origins": args.cors_origins,
    }
    settings = Settings.from_env(env, **flags)
    trusted_hosts(settings)  # refuse names that can never match now rather than when the app is built
    cors_origins(settings)
    if settings.auth == "open" and not is_loopback(settings.host) and not settings.allow_open_remote:
        raise ValueError(
            f"refusing to serve without authentication on {settings.host}: open mode is for loopback addresses "
            "only; use --auth required, --host 127.0.0.1, or --allow-open-remote if you mean it"
        )
    if settings.admin_key is not None and not valid_admin_key(settings.admin_key):
        raise ValueError(
            "the administrator key (--admin-key, TESSERA_ADMIN_KEY) must be 16 to 256 printable characters"
        )
    return settings


class _Server(uvicorn.Server):
    """Says where it listens once the socket is bound (with ``--port 0``, the port the system chose)."""

    def __init__(self, config: uvicorn.Config, data_dir: str) -> None:
        super().__init__(config)
        self.data_dir = data_dir

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers and self.servers[0].sockets:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            print(f"Tessera listening on http://{shown}:{port} (data: {self.data_dir})", flush=True)


def serve(settings: Settings) -> None:
    import engine
    from service.app import create_app

    db = engine.connect(settings=settings)
    app = None
    try:
        app = create_app(db, settings)
        if settings.auth == "required" and not settings.admin_key:
            key = app.state.gate.keys.first_admin_key()
            if key is not None:
                print(f"First start in required mode: an administrator API key, shown once:\n  {key}", flush=True)
        db.jobs.start()  # run queued jobs (and those a restart re-queued) on this process's worker pool
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=False,
            ws="none",
            lifespan="off",
        )
        _Server(config, db.root).run()
    except KeyboardInterrupt:  # uvicorn shuts down gracefully on Ctrl-C, then raises it again
        pass
    finally:
        if app is not None:
            app.state.gate.close()  # the last seconds of key usage
        db.close()


def list_plugins(output: Literal["text", "json"] = "text") -> int:
    """Print what the entry points register (this process's view: no Ray, no data directory needed)."""
    try:
        registry = Registry.load()
    except (PluginError, ValueError) as exc:  # ValueError: a TESSERA_* variable that does not parse
        print(f"tessera: error: {exc}", file=sys.stderr)
        return 1
    description = registry.describe()
    print(json.dumps(description, indent=2) if output == "json" else render(description))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "plugins":
        return list_plugins("json" if args.json else "text")
    if args.command == "jobs":
        return jobs_cli.run(args)
    try:
        settings = settings_from(args)
    except ValueError as exc:
        print(f"tessera: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
