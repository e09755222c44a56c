"""The user docs ship with the code and stay true to it: every relative link of README.md and
docs/ resolves inside the repository (anchors included), every route and error code the
service has is in docs/api.md (error codes in docs/troubleshooting.md too), every complete
`jaxport.toml` example of docs/archive.md parses, and nothing points outside the repository."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
API = (ROOT / "docs" / "api.md").read_text()
TROUBLESHOOTING = (ROOT / "docs" / "troubleshooting.md").read_text()
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", page.read_text(), re.M)}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_resolve_inside_the_repo(page: Path) -> None:
    for link in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+://", link):
            continue
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.is_relative_to(ROOT), f"{page.name}: {link} points outside the repository"
        assert path.exists(), f"{page.name}: {link} does not exist"
        if anchor:
            assert anchor in _anchors(path), f"{page.name}: {link}: no heading #{anchor}"


def test_the_docs_link_each_other() -> None:
    assert sum(len(LINK.findall(p.read_text())) for p in PAGES) >= 30


def test_readme_links_every_doc() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[1:]:
        assert f"](docs/{page.name})" in readme, page.name


# The team's design file and the folder beside the checkout: users have neither. Spelled in
# pieces so that this file does not name them itself.
OUTSIDE = ("DESIGN" + ".md", ".." + "/shared")


def test_nothing_points_outside_the_repository() -> None:
    """No tracked text file (docs, code, config) names what only the team has."""
    import subprocess

    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    for name in tracked:
        path = ROOT / name
        if path.suffix in {".lock", ".json", ".npz", ".png"} or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        for outside in OUTSIDE:
            assert outside not in text, f"{name} names {outside}"


def _app(storage: Path):
    from service.app import create_app
    from service.config import Settings

    return create_app(Settings(storage_url=f"file://{storage}"))


def test_every_route_is_in_the_api_doc(tmp_path: Path) -> None:
    """The OpenAPI's routes, and the web page's (left out of the schema)."""
    from service import ui

    openapi = _app(tmp_path).openapi()["paths"]
    routes = [(m.upper(), path) for path, ops in openapi.items() for m in ops]
    routes += [(m, r.path) for r in ui.router.routes for m in r.methods - {"HEAD"}]
    assert ("POST", "/v1/inspect") in routes and len(routes) >= 14
    documented = re.sub(r"<(\w+)>", r"{\1}", API)
    for method, path in routes:
        assert re.search(rf"`{method} {re.escape(path)}[`\s?]", documented), f"{method} {path}"


def _error_codes() -> set[str]:
    """Every error code the product can answer: the `code` of every JaxportError subclass in
    jaxport, service and workers, and the literal codes of hand-built error bodies."""
    from jaxport.errors import JaxportError

    for package in ("jaxport", "service", "workers"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            if not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    codes, todo = set(), [JaxportError]
    while todo:
        cls = todo.pop()
        todo += cls.__subclasses__()
        if isinstance(cls.__dict__.get("code"), str):
            codes.add(cls.code)
    literal = [r'error_response\(\s*\d+,\s*"([a-z_]+)"', r'"code":\s*"([a-z_]+)"',
               r'codes\.get\([^,]+,\s*"([a-z_]+)"\)', r'\d{3}: "([a-z_]+)"']
    for package in ("jaxport", "service", "workers"):
        for source in (ROOT / package).rglob("*.py"):
            text = source.read_text()
            for pattern in literal:
                codes.update(re.findall(pattern, text))
    return codes


def test_every_error_code_is_documented() -> None:
    codes = _error_codes()
    assert {"bad_archive", "lowering_unsupported", "inspect_unavailable", "worker_lost",
            "internal_error", "method_not_allowed"} <= codes
    for code in sorted(codes):
        assert f"`{code}`" in API, f"{code} is not in docs/api.md"
        assert f"**`{code}`**" in TROUBLESHOOTING, f"{code} is not in docs/troubleshooting.md"


def test_archive_examples_parse() -> None:
    from jaxport.manifest import parse_manifest

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "docs" / "archive.md").read_text(), re.S)
    complete = [b for b in blocks if b.startswith("format = 1")]
    assert len(complete) >= 2
    for block in complete:
        manifest = parse_manifest(block)
        assert manifest.functions
