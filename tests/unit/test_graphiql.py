"""GraphiQL offline: the page's CDN files are rewritten to the gateway's own copies only when
every one is installed with the right bytes; only those files are served."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from strawberry.http.ides import get_graphql_ide_html

from graphql_gateway.graphiql import (
    STATIC_PREFIX,
    build_page,
    cdn_assets,
    export_assets,
    graphiql_router,
)
from shared.http import install_common
from shared.settings import ServiceSettings
from tests.fixtures.fleet import REPO_ROOT

SCRIPT = b"window.demo = 1;"
TEMPLATE = """<html><head>
<script crossorigin src="https://unpkg.com/demo@1.2.3/umd/demo.min.js"
  integrity="{integrity}"></script>
<link rel="stylesheet" href="https://unpkg.com/@scope/style@0.1.0/dist/style.css" />
</head></html>"""


def sri(content: bytes) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(content).digest()).decode()


def install(folder: Path, package: str, version: str, files: dict[str, bytes]) -> None:
    root = folder / package
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": package, "version": version}))
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)


def installed(folder: Path, script: bytes = SCRIPT) -> Path:
    install(folder, "demo", "1.2.3", {"umd/demo.min.js": script})
    install(folder, "@scope/style", "0.1.0", {"dist/style.css": b"body {}"})
    return folder


def test_the_page_points_at_the_gateway_when_every_file_is_installed(tmp_path: Path) -> None:
    page = build_page(installed(tmp_path), TEMPLATE.format(integrity=sri(SCRIPT)))
    assert page.offline
    assert "unpkg.com" not in page.html
    assert f'src="{STATIC_PREFIX}/demo/umd/demo.min.js"' in page.html
    assert f'href="{STATIC_PREFIX}/@scope/style/dist/style.css"' in page.html
    # The browser still checks the bytes.
    assert sri(SCRIPT) in page.html
    assert set(page.files) == {"demo/umd/demo.min.js", "@scope/style/dist/style.css"}


def test_the_page_stays_on_the_cdn_when_a_file_is_missing(tmp_path: Path) -> None:
    install(tmp_path, "demo", "1.2.3", {"umd/demo.min.js": SCRIPT})
    template = TEMPLATE.format(integrity=sri(SCRIPT))
    page = build_page(tmp_path, template)
    assert not page.offline
    assert page.html == template


def test_the_page_stays_on_the_cdn_when_a_version_or_the_bytes_differ(tmp_path: Path) -> None:
    tampered = build_page(
        installed(tmp_path / "a", b"evil()"), TEMPLATE.format(integrity=sri(SCRIPT))
    )
    assert not tampered.offline
    other_version = TEMPLATE.format(integrity=sri(SCRIPT)).replace("demo@1.2.3", "demo@1.2.4")
    assert not build_page(installed(tmp_path / "b"), other_version).offline


def test_only_the_files_the_page_names_are_served(tmp_path: Path) -> None:
    folder = installed(tmp_path)
    app = FastAPI()
    install_common(app, ServiceSettings(jwt_secret="x" * 40))
    app.state.graphiql_page = build_page(folder, TEMPLATE.format(integrity=sri(SCRIPT)))
    app.include_router(graphiql_router)
    with TestClient(app) as client:
        served = client.get(f"{STATIC_PREFIX}/demo/umd/demo.min.js")
        assert served.status_code == 200
        assert served.content == SCRIPT
        assert "max-age" in served.headers["cache-control"]
        assert client.get(f"{STATIC_PREFIX}/demo/package.json").status_code == 404


def test_clients_package_json_pins_what_strawberrys_page_loads() -> None:
    """`make install` installs clients/package.json: it must pin exactly the versions the page
    of the installed Strawberry names, or the gateway falls back to the CDN."""
    pinned = json.loads((REPO_ROOT / "clients" / "package.json").read_text())["dependencies"]
    for asset in cdn_assets(get_graphql_ide_html("graphiql")):
        assert pinned.get(asset.package) == asset.version, asset


def test_the_page_opens_on_the_first_session_with_the_authorization_header_to_fill_in() -> None:
    from graphql_gateway.graphiql import FIRST_SESSION_DOCUMENT

    page = build_page(Path("/nonexistent"))
    document = FIRST_SESSION_DOCUMENT.read_text(encoding="utf-8")
    assert "Welcome to GraphiQL" not in page.html
    assert json.dumps("mutation Register {")[1:-1] in page.html
    assert "React.useState(parameters.headers || " in page.html
    assert "Authorization" in page.html and "Bearer \\u003cthe token" in page.html
    # Nothing in the document can end the page's script early.
    assert "</script>" not in json.dumps(document)


def test_the_first_session_document_is_valid_against_the_schema() -> None:
    from graphql import parse, validate

    from graphql_gateway.graphiql import FIRST_SESSION_DOCUMENT
    from graphql_gateway.schema import schema

    document = parse(FIRST_SESSION_DOCUMENT.read_text(encoding="utf-8"))
    assert validate(schema._schema, document) == []
    names = [d.name.value for d in document.definitions if getattr(d, "name", None)]
    assert names[:2] == ["Register", "Login"]
    assert "PlaceOrder" in names


def test_a_changed_strawberry_page_is_an_error_not_a_silent_welcome() -> None:
    from graphql_gateway.graphiql import with_first_session

    with pytest.raises(ValueError, match="page changed"):
        with_first_session("<html>no markers</html>", "query A { x }", "{}")


def test_the_image_build_copies_just_the_files_the_page_loads(tmp_path: Path) -> None:
    """The gateway image's build stage: the page's files (and package.json) from node_modules
    into a folder the gateway then serves offline."""
    template = TEMPLATE.format(integrity=sri(SCRIPT))
    source = installed(tmp_path / "node_modules")
    (source / "demo" / "umd" / "other.js").write_bytes(b"not needed")
    copied = export_assets(source, tmp_path / "assets", template)
    assert copied == [
        "@scope/style/dist/style.css",
        "@scope/style/package.json",
        "demo/package.json",
        "demo/umd/demo.min.js",
    ]
    assert not (tmp_path / "assets" / "demo" / "umd" / "other.js").exists()
    assert build_page(tmp_path / "assets", template).offline


def test_the_image_build_stops_when_a_file_is_missing_or_differs(tmp_path: Path) -> None:
    source = installed(tmp_path / "node_modules", script=b"tampered")
    with pytest.raises(ValueError, match="does not match its integrity hash"):
        export_assets(source, tmp_path / "assets", TEMPLATE.format(integrity=sri(SCRIPT)))
    with pytest.raises(ValueError, match="is not installed"):
        export_assets(tmp_path / "empty", tmp_path / "assets", TEMPLATE.format(integrity="x"))


def test_the_image_build_command_copies_strawberrys_files(tmp_path: Path) -> None:
    """`python -m graphql_gateway.graphiql` as the Dockerfile runs it, on clients/node_modules
    (`npm ci` of clients/package-lock.json, as in the image's build stage)."""
    node_modules = REPO_ROOT / "clients" / "node_modules"
    if not (node_modules / "graphiql" / "package.json").is_file():
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed here: `make install` could not run npm ci")
        pytest.fail("clients/node_modules is missing: run `make install` (npm ci)")
    run = subprocess.run(  # noqa: S603 - our own module, fixed arguments
        [sys.executable, "-m", "graphql_gateway.graphiql", str(node_modules), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
    )
    assert run.returncode == 0, run.stderr
    page = build_page(tmp_path)
    assert page.offline
    assert set(page.files) <= set(run.stdout.split())
