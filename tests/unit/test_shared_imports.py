"""`shared/` is the runtime library every image ships: it imports no service package and none of
the local tooling (devstack, fleet), at the top of a module or inside a function."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from shared.mongo import InProcessStoreMissing, MongoStore
from shared.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "shared"
FORBIDDEN = {"devstack", "fleet", *(service.package for service in SERVICES)}
# The one sanctioned exception: MONGO_URI=memory:// loads the in-process store on demand (and
# says clearly that it is local-only where devstack is absent).
ALLOWED = {("shared/mongo.py", "devstack.memory_store")}


def imported_modules(path: Path) -> set[str]:
    """Every absolute module a file imports, wherever in the file."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def forbidden_imports(root: Path) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        for module in sorted(imported_modules(path)):
            if module.split(".")[0] in FORBIDDEN and (relative, module) not in ALLOWED:
                found.append(f"{relative}: {module}")
    return found


def test_shared_imports_no_service_and_no_local_tooling() -> None:
    assert forbidden_imports(SHARED) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("import shared\n\n\ndef f():\n    from graphql_gateway.events import x\n")
    assert imported_modules(sample) == {"shared", "graphql_gateway.events"}
    assert {"graphql_gateway", "order_service", "devstack", "fleet"} <= FORBIDDEN


def test_the_in_process_store_is_a_clear_error_where_devstack_is_absent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "devstack.memory_store", None)  # as in an image
    with pytest.raises(InProcessStoreMissing, match="local stack"):
        MongoStore("memory://", "orders")
