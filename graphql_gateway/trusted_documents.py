"""Write the trusted-documents manifest from the clients the project ships, in one command:

    python -m graphql_gateway.trusted_documents [FILE ...] [--output PATH]

Each FILE is a Postman collection (`.json`, v2.1: every GraphQL request body, at any folder
depth) or GraphQL documents (`.graphql`/`.gql`: each operation, with the fragments it uses).
Without FILEs: the Postman collection of clients/postman, GraphiQL's first session
(graphql_gateway/first_session.graphql) and every `.graphql` file under clients/documents (the
demo's documents go there). The output (default graphql_gateway/trusted-documents.json, shipped
in the gateway's image) is an Apollo persisted-query manifest; a document is listed as its
client sends it: a Postman body as written, a `.graphql` operation as written and as printed
(graphql-js's printer, with and without the final newline version 15 adds: what Apollo's clients
send; write `__typename` where Apollo Client's cache adds it). An Apollo Client app can also
list its operations with @apollo/generate-persisted-query-manifest: the format is the same.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    parse,
    print_ast,
    visit,
)
from graphql.language import Visitor

from graphql_gateway.persisted import DEFAULT_MANIFEST, MANIFEST_FORMAT, document_hash

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCES = (
    REPO_ROOT / "clients" / "postman" / "fleet.postman_collection.json",
    REPO_ROOT / "clients" / "documents",
    # The first session GraphiQL opens on: its operations run as written there.
    REPO_ROOT / "graphql_gateway" / "first_session.graphql",
)


def postman_documents(collection: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(name, document) of every GraphQL request of a Postman v2.1 collection."""
    for item in collection.get("item", []):
        if "item" in item:
            yield from postman_documents(item)
            continue
        body = item.get("request", {}).get("body", {})
        if body.get("mode") == "graphql":
            yield item["name"], body["graphql"]["query"]


class _Spreads(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        self.names.add(node.name.value)


def _with_fragments(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> DocumentNode:
    """An operation and every fragment it uses, as a document of its own."""
    needed: dict[str, FragmentDefinitionNode] = {}
    pending: list[Any] = [operation]
    while pending:
        spreads = _Spreads()
        visit(pending.pop(), spreads)
        for name in sorted(spreads.names - needed.keys()):
            needed[name] = fragments[name]
            pending.append(fragments[name])
    return DocumentNode(definitions=(operation, *needed.values()))


def graphql_documents(text: str) -> Iterator[tuple[str, str]]:
    """(name, document) of each operation of a `.graphql` file, as written (when the file is
    that one operation) and as printed."""
    document = parse(text)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    for operation in operations:
        name = operation.name.value if operation.name else "anonymous"
        if len(operations) == 1:
            yield name, text
        printed = print_ast(_with_fragments(operation, fragments))
        # graphql-js 15's printer (Apollo Client's with it) ends the document with a newline.
        yield name, printed
        yield name, printed + "\n"


def documents_of(path: Path) -> Iterator[tuple[str, str]]:
    """The documents of one source file, or of every `.graphql` file of a folder."""
    if path.is_dir():
        for child in sorted(path.glob("**/*.graphql")) + sorted(path.glob("**/*.gql")):
            yield from graphql_documents(child.read_text(encoding="utf-8"))
    elif path.suffix == ".json":
        yield from postman_documents(json.loads(path.read_text(encoding="utf-8")))
    else:
        yield from graphql_documents(path.read_text(encoding="utf-8"))


def _operation_type(document: str) -> str:
    for definition in parse(document).definitions:
        if isinstance(definition, OperationDefinitionNode):
            return definition.operation.value
    return "query"


def build_manifest(sources: list[Path]) -> dict[str, Any]:
    """The manifest of every document of `sources`, one entry per distinct text."""
    operations: dict[str, dict[str, str]] = {}
    for source in sources:
        for name, document in documents_of(source):
            sha = document_hash(document)
            operations.setdefault(
                sha, {"id": sha, "name": name, "type": _operation_type(document), "body": document}
            )
    ordered = sorted(operations.values(), key=lambda o: (o["name"], o["id"]))
    return {"format": MANIFEST_FORMAT, "version": 1, "operations": ordered}


def main(argv: list[str] | None = None) -> None:
    """The command line (see the module)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="*", type=Path, help="Postman collections, .graphql")
    parser.add_argument("--output", type=Path, default=DEFAULT_MANIFEST)
    args = parser.parse_args(argv)
    sources = args.sources or [path for path in DEFAULT_SOURCES if path.exists()]
    manifest = build_manifest(sources)
    args.output.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"{len(manifest['operations'])} documents -> {args.output}")


if __name__ == "__main__":
    main()
