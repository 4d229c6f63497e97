"""The web page at /ui: static files from this package (no build step, nothing from other sites).

`routes()` serves them under a strict Content-Security-Policy: the page loads scripts, styles and
images only from this server and talks only to it (same origin); no inline script or style runs.
The pages name their files and the API relative to where they were loaded, so the same routes serve
them at /ui and under a reader profile's address (/r/<key>/ui), which their calls then go to.
"""

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

STATIC = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
                           "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_PAGES = {"/ui": "index.html", "/ui/status": "status.html"}
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _file(name: str) -> Response:
    path = STATIC / name
    if "/" in name or path.suffix not in _TYPES or not path.is_file():
        return JSONResponse({"error": f"No file /ui/{name}; the page is at /ui."}, 404)
    return Response(path.read_bytes(), media_type=_TYPES[path.suffix], headers=HEADERS)


def page(name: str):
    """A page's handler: the file it serves, whatever prefix it was reached under."""
    async def page(request: Request) -> Response:
        return _file(name)
    return page


async def _without_slash(request: Request) -> Response:
    """A page's address with a final '/' sends the browser to the one without (a relative Location, so under
    a profile's prefix too): the page's relative links resolve from that one."""
    return RedirectResponse("../" + request.url.path.rstrip("/").rsplit("/", 1)[-1], headers=HEADERS)


async def _asset(request: Request) -> Response:
    return _file(request.path_params["name"])


def routes() -> list[Route]:
    """GET /ui (the try-it page), /ui/status (the operator's view) and their files, /ui/<name>."""
    return [*(Route(path, page(name), methods=["GET"]) for path, name in _PAGES.items()),
            *(Route(path + "/", _without_slash, methods=["GET"]) for path in _PAGES),
            Route("/ui/{name}", _asset, methods=["GET"])]
