"""``GET /docs``: Swagger UI over ``/openapi.json``, served by the app itself so that it works offline.

Swagger UI 5 (the first major version that renders OpenAPI 3.1) comes from the files of the ``swagger-ui-py``
package, mounted at ``/docs/assets``; only the few the page uses are served (the package also ships Swagger Editor
and a sample initializer that points at a public URL). The page's own script and style are served from the same
mount, since a Content-Security-Policy of ``script-src 'self'`` allows no inline script. Every URL on the page is
relative, so the page also works under a ``root_path`` prefix.

>>> from starlette.applications import Starlette
>>> app = Starlette(routes=docs_routes())   # the routes of /openapi.json, /docs and /docs/assets
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from service.openapi import openapi_json

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
SWAGGER_UI_FILES = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png", "favicon-16x16.png"})

# No inline script or style at all: Swagger UI sets its styles through the DOM, which CSP allows (checked in headless
# Chromium, whose console reports no violation), and its CSS uses data: images.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

# Plugins and the standalone preset are left out: its top bar loads any URL typed into it, and the default
# validator badge calls a public validator.
_INIT_JS = """\
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.url,
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""
_PAGE_CSS = """\
body { margin: 0; background: #fafafa; }
.tessera-note { max-width: 1460px; margin: 0 auto; padding: 12px 20px 0; box-sizing: border-box;
  font: 14px/1.5 sans-serif; color: #3b4151; }
.tessera-note code { background: #eee; padding: 0 3px; border-radius: 3px; }
"""
_OWN_FILES: dict[str, tuple[str, str]] = {
    "tessera-docs.js": (_INIT_JS, "text/javascript; charset=utf-8"),
    "tessera-docs.css": (_PAGE_CSS, "text/css; charset=utf-8"),
}

_PAGE = """\
<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Tessera API</title>
  <link rel="stylesheet" href="docs/assets/swagger-ui.css">
  <link rel="stylesheet" href="docs/assets/tessera-docs.css">
  <link rel="icon" type="image/png" href="docs/assets/favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="docs/assets/favicon-16x16.png" sizes="16x16">
</head>
<body>
  <p class="tessera-note">{note}</p>
  <div id="swagger-ui" data-url="openapi.json"></div>
  <noscript><p class="tessera-note">This page needs JavaScript. The API document is at
    <a href="openapi.json">openapi.json</a>.</p></noscript>
  <script src="docs/assets/swagger-ui-bundle.js"></script>
  <script src="docs/assets/tessera-docs.js"></script>
</body>
</html>
"""
_KEYS = "a key as <code>Authorization: Bearer &lt;key&gt;</code> or <code>X-API-Key: &lt;key&gt;</code>"
_NOTES = {
    "open": "This server runs in <b>open</b> mode (local development): a request without a key acts as the "
    "administrator, so <i>Try it out</i> works without authorizing. A key that is presented (<i>Authorize</i>: "
    f"{_KEYS}) is still checked and its permissions are enforced.",
    "required": f"This server runs in <b>required</b> mode: every request but health, readiness and these docs "
    f"needs {_KEYS}. Use <i>Authorize</i> before <i>Try it out</i>.",
}
_NOTE_UNKNOWN = (
    f"Send {_KEYS}. In <b>open</b> mode (local development) a request without a key acts as the administrator; in "
    "<b>required</b> mode every request but health, readiness and these docs needs a key."
)


def swagger_ui_directory() -> Path:
    """Where the installed ``swagger-ui-py`` keeps Swagger UI's files (found without importing the package, whose
    framework adapters the service does not use)."""
    spec = importlib.util.find_spec("swagger_ui")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        directory = Path(location) / "static"
        if all((directory / name).is_file() for name in SWAGGER_UI_FILES):
            return directory
    raise RuntimeError("Swagger UI's files are missing: the /docs page needs the swagger-ui-py package installed")


class DocsAssets(StaticFiles):
    """The page's files: the few of Swagger UI it uses, and its own script and style; anything else is 404."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in SWAGGER_UI_FILES and path not in _OWN_FILES:
            raise HTTPException(status_code=404)
        own = _OWN_FILES.get(path)
        if own is not None and scope["method"] in ("GET", "HEAD"):
            response = Response(own[0], media_type=own[1])
        else:
            response = await super().get_response(path, scope)  # 405 for another method
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def _note(request: Request) -> str:
    mode = getattr(getattr(request.app.state, "settings", None), "auth", None)
    return _NOTES.get(str(mode), _NOTE_UNKNOWN)


async def docs_page(request: Request) -> Response:
    """``GET /docs``."""
    page = _PAGE.replace("{note}", _note(request))
    return HTMLResponse(page, headers=_PAGE_HEADERS)


def docs_routes() -> list[BaseRoute]:
    """``GET /openapi.json``, ``GET /docs`` and ``/docs/assets``: public in every auth mode."""
    return [
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route(DOCS_PATH, docs_page, methods=["GET"]),
        Mount(ASSETS_PATH, app=DocsAssets(directory=swagger_ui_directory()), name="docs-assets"),
    ]


__all__ = ["ASSETS_PATH", "DocsAssets", "docs_page", "docs_routes"]
