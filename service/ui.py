"""The web UI: a single page (plain HTML + vanilla JS, no build step) over the v1 API.

`GET /` is the page, `GET /ui/{name}` its script and style sheet, and `GET /ui/tf.min.js` the
TF.js browser bundle from js/node_modules, so the page runs TF.js artifacts in the browser
without loading anything from the internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from jaxport.verify.tfjs import INSTALL_HINT, JS_DIR
from service.errors import NotFound, ServiceUnavailable

STATIC_DIR = Path(__file__).resolve().parent / "static"
TFJS_BUNDLE = JS_DIR / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
ASSETS = {"app.js": "text/javascript", "inspect.js": "text/javascript", "style.css": "text/css"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


@router.get("/ui/tf.min.js")
async def tfjs_bundle() -> FileResponse:
    """The TF.js runtime for the browser; 503 when js/ is not installed on this server."""
    if not TFJS_BUNDLE.is_file():
        raise ServiceUnavailable(f"the TF.js runtime is not installed on this server "
                                 f"({TFJS_BUNDLE} is missing)", INSTALL_HINT)
    return FileResponse(TFJS_BUNDLE, media_type="text/javascript")


@router.get("/ui/{name}")
async def asset(name: str) -> FileResponse:
    """One of the page's own files; anything else is a 404."""
    if name not in ASSETS:
        raise NotFound(f"no UI file {name!r}", f"UI files: {', '.join([*ASSETS, 'tf.min.js'])}")
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache"})
