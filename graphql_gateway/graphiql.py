"""GraphiQL with no internet: Strawberry's GraphiQL page loads React, GraphiQL and its explorer
plugin from unpkg.com; this serves the same files from the gateway itself, taken from the npm
packages `make install` puts in `clients/node_modules` (see clients/package.json).

Every `https://unpkg.com/<package>@<version>/<file>` of Strawberry's page is rewritten to
`/graphiql/static/<package>/<file>`, served from `<assets dir>/<package>/<file>`, but only if
every file is there, at the version the page names, with the bytes its `integrity` hash names
(the browser checks that hash again). Otherwise the page stays on the CDN, with a log line.

The page opens on the fleet's first session (first_session.graphql) instead of GraphiQL's
generic welcome, with the Authorization header to fill in shown in the headers pane.

`python -m graphql_gateway.graphiql NODE_MODULES DEST` copies just those files (and each
package's package.json) into DEST, or fails naming what is missing: the gateway image's build
runs it (deploy/docker/service.Dockerfile) and sets GRAPHIQL_ASSETS_DIR to DEST."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import FileResponse
from strawberry.http.ides import get_graphql_ide_html

from shared.errors import NotFound
from shared.logging import get_logger

log = get_logger(__name__)

STATIC_PREFIX = "/graphiql/static"
# Where `make install` puts the npm packages (clients/package.json) in a checkout.
DEFAULT_ASSETS_DIR = Path(__file__).resolve().parents[1] / "clients" / "node_modules"
# The files never change at a given package version: a browser may keep them a day.
ASSET_CACHE_CONTROL = "public, max-age=86400"
# What the editor shows when the page opens (also one of the trusted documents' sources).
FIRST_SESSION_DOCUMENT = Path(__file__).with_name("first_session.graphql")
FIRST_SESSION_HEADERS = (
    '{\n  "Authorization": "Bearer <the token registerUser or login answered>"\n}'
)
_EXAMPLE_QUERY_START = "const EXAMPLE_QUERY = `"
_EXAMPLE_QUERY_END = "`;"
_HEADERS_STATE = "React.useState(parameters.headers)"

_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_CDN_URL = re.compile(
    r"https://unpkg\.com/(?P<package>(?:@[\w.-]+/)?[\w.-]+)@(?P<version>[\w.-]+)/(?P<file>[\w./-]+)"
)
_INTEGRITY = re.compile(r'integrity="(?P<integrity>sha(?:256|384|512)-[^"]+)"')


@dataclass(frozen=True)
class CdnAsset:
    """One file the page loads from unpkg."""

    package: str
    version: str
    file: str
    integrity: str | None

    @property
    def local_path(self) -> str:
        """Its path under `/graphiql/static/` (and under the assets folder)."""
        return f"{self.package}/{self.file}"


@dataclass(frozen=True)
class GraphiQLPage:
    """The page's HTML and the files it loads from the gateway (empty when on the CDN)."""

    html: str
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def offline(self) -> bool:
        """True when the page loads nothing from the internet."""
        return bool(self.files)


def cdn_assets(template: str) -> list[CdnAsset]:
    """Every unpkg file a page loads, in order."""
    assets = []
    for tag in _TAG.finditer(template):
        url = _CDN_URL.search(tag[0])
        if url is None:
            continue
        integrity = _INTEGRITY.search(tag[0])
        assets.append(
            CdnAsset(
                url["package"],
                url["version"],
                url["file"],
                integrity["integrity"] if integrity else None,
            )
        )
    return assets


def _integrity_of(path: Path, integrity: str) -> str:
    algorithm = integrity.split("-", 1)[0]
    digest = hashlib.new(algorithm, path.read_bytes()).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode()}"


def _installed_version(assets_dir: Path, package: str) -> str | None:
    manifest = assets_dir / package / "package.json"
    if not manifest.is_file():
        return None
    return str(json.loads(manifest.read_text(encoding="utf-8")).get("version"))


def missing_assets(assets: list[CdnAsset], assets_dir: Path) -> list[str]:
    """Why each asset cannot be served locally (empty: all can)."""
    problems = []
    for asset in assets:
        path = assets_dir / asset.local_path
        installed = _installed_version(assets_dir, asset.package)
        if installed != asset.version:
            problems.append(f"{asset.package}@{asset.version} is not installed (found {installed})")
        elif not path.is_file():
            problems.append(f"{asset.local_path} is missing")
        elif asset.integrity and _integrity_of(path, asset.integrity) != asset.integrity:
            problems.append(f"{asset.local_path} does not match its integrity hash")
    return problems


def _script_literal(text: str) -> str:
    """A JavaScript string literal of `text` that cannot end the page's <script> element."""
    return json.dumps(text).replace("<", "\\u003c").replace(">", "\\u003e")


def with_first_session(template: str, document: str, headers: str) -> str:
    """Strawberry's page opening on `document` in the editor and `headers` in the headers pane
    (a query or headers in the page's URL still win). Fails loudly when Strawberry's page no
    longer has the places this relies on, rather than quietly opening on the generic welcome."""
    start = template.find(_EXAMPLE_QUERY_START)
    end = template.find(_EXAMPLE_QUERY_END, start + len(_EXAMPLE_QUERY_START))
    if start < 0 or end < 0 or template.count(_HEADERS_STATE) != 1:
        raise ValueError("Strawberry's GraphiQL page changed: cannot set the default document")
    template = (
        f"{template[:start]}const EXAMPLE_QUERY = {_script_literal(document)};"
        f"{template[end + len(_EXAMPLE_QUERY_END) :]}"
    )
    return template.replace(
        _HEADERS_STATE, f"React.useState(parameters.headers || {_script_literal(headers)})"
    )


def build_page(assets_dir: Path | None, template: str | None = None) -> GraphiQLPage:
    """Strawberry's GraphiQL page, opening on the first session, pointing at the gateway's own
    copies of its files, or at the CDN when the files are not installed."""
    if template is None:
        template = with_first_session(
            get_graphql_ide_html("graphiql"),
            FIRST_SESSION_DOCUMENT.read_text(encoding="utf-8"),
            FIRST_SESSION_HEADERS,
        )
    assets = cdn_assets(template)
    folder = assets_dir or DEFAULT_ASSETS_DIR
    problems = missing_assets(assets, folder)
    if problems or not assets:
        log.warning(
            "graphiql assets not installed here (run make install with npm present); "
            "the GraphiQL page loads them from the CDN",
            assets_dir=str(folder),
            problems=problems[:3],
        )
        return GraphiQLPage(template)

    def local(match: re.Match[str]) -> str:
        return f"{STATIC_PREFIX}/{match['package']}/{match['file']}"

    html = _CDN_URL.sub(local, template)
    files = {asset.local_path: folder / asset.local_path for asset in assets}
    log.info("graphiql served offline", assets_dir=str(folder), files=len(files))
    return GraphiQLPage(html, files)


def export_assets(assets_dir: Path, destination: Path, template: str | None = None) -> list[str]:
    """Copy the files the page loads (and their packages' package.json) from `assets_dir` to
    `destination`; the relative paths copied. Raises ValueError naming what is missing."""
    template = template if template is not None else get_graphql_ide_html("graphiql")
    assets = cdn_assets(template)
    problems = missing_assets(assets, assets_dir)
    if problems or not assets:
        raise ValueError("; ".join(problems) or "the GraphiQL page names no CDN file")
    names = sorted(
        {asset.local_path for asset in assets}
        | {f"{asset.package}/package.json" for asset in assets}
    )
    for name in names:
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(assets_dir / name, destination / name)
    return names


graphiql_router = APIRouter()


@graphiql_router.get(STATIC_PREFIX + "/{asset:path}", include_in_schema=False)
async def graphiql_asset(asset: str, request: Request) -> FileResponse:
    """One of the files the GraphiQL page names; nothing else under the folder is served."""
    page: GraphiQLPage | None = getattr(request.app.state, "graphiql_page", None)
    path = page.files.get(asset) if page else None
    if path is None:
        raise NotFound("No such GraphiQL asset.")
    return FileResponse(path, headers={"cache-control": ASSET_CACHE_CONTROL})


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m graphql_gateway.graphiql NODE_MODULES DESTINATION")
    try:
        copied = export_assets(Path(sys.argv[1]), Path(sys.argv[2]))
    except ValueError as error:
        sys.exit(f"GraphiQL's files cannot be served offline: {error}")
    print("\n".join(copied))
