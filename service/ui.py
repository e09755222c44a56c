"""The web UI: a single page (plain HTML + vanilla JS, no build step) over the v1 API.

`GET /` is the page, `GET /ui/{name}` its scripts and style sheet, `GET /ui/tf.min.js` the
TF.js browser bundle and `GET /ui/litertjs/{name}` LiteRT.js (`@litertjs/core`, its one
dependency `@litertjs/wasm-utils`, and the WASM runtime files), all from js/node_modules, so
the page runs the TF.js and TFLite artifacts in the browser without loading anything from the
internet.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from jaxport.verify.tfjs import INSTALL_HINT, JS_DIR
from service.errors import NotFound, ServiceUnavailable

STATIC_DIR = Path(__file__).resolve().parent / "static"
NODE_MODULES = JS_DIR / "node_modules"
TFJS_BUNDLE = NODE_MODULES / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
ASSETS = {name: "text/javascript" for name in ("app.js", "options.js", "jobs.js", "chart.js",
                                               "tryout.js", "inspect.js")}
ASSETS["style.css"] = "text/css"
LITERTJS = NODE_MODULES / "@litertjs"
# The LiteRT.js files the page loads: the ES modules (index.html's import map names
# wasm-utils.js for core.js's bare import) and the WASM runtime variants core.js picks from.
LITERTJS_MODULES = {"core.js": LITERTJS / "core" / "dist" / "index.js",
                    "wasm-utils.js": LITERTJS / "wasm-utils" / "dist" / "index.js"}
LITERTJS_WASM = {name: LITERTJS / "core" / "wasm" / name
                 for variant in ("", "_compat", "_jspi", "_threaded") for ext in ("js", "wasm")
                 for name in [f"litert_wasm{variant}_internal.{ext}"]}
MEDIA = {".js": "text/javascript", ".wasm": "application/wasm"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html",
                        headers={"Cache-Control": "no-cache"})


def _runtime_file(path: Path, what: str) -> FileResponse:
    """A file of js/node_modules; 503 when js/ is not installed on this server."""
    if not path.is_file():
        raise ServiceUnavailable(f"the {what} runtime is not installed on this server "
                                 f"({path} is missing)", INSTALL_HINT)
    return FileResponse(path, media_type=MEDIA[path.suffix])


@router.get("/ui/tf.min.js")
async def tfjs_bundle() -> FileResponse:
    """The TF.js runtime for the browser."""
    return _runtime_file(TFJS_BUNDLE, "TF.js")


def _litertjs_file(files: dict[str, Path], name: str) -> FileResponse:
    if name not in files:
        raise NotFound(f"no LiteRT.js file {name!r}", f"LiteRT.js files here: {', '.join(files)}")
    return _runtime_file(files[name], "LiteRT.js")


@router.get("/ui/litertjs/{name}")
async def litertjs_module(name: str) -> FileResponse:
    """An ES module of LiteRT.js for the browser; any other name is a 404."""
    return _litertjs_file(LITERTJS_MODULES, name)


@router.get("/ui/litertjs/wasm/{name}")
async def litertjs_wasm(name: str) -> FileResponse:
    """A file of LiteRT.js's WASM runtime (the loader script and its .wasm)."""
    return _litertjs_file(LITERTJS_WASM, name)


@router.get("/ui/{name}")
async def asset(name: str) -> FileResponse:
    """One of the page's own files; anything else is a 404."""
    if name not in ASSETS:
        raise NotFound(f"no UI file {name!r}", f"UI files: {', '.join([*ASSETS, 'tf.min.js'])}")
    return FileResponse(STATIC_DIR / name, media_type=ASSETS[name],
                        headers={"Cache-Control": "no-cache"})
