"""Every part of the public GraphQL schema a client developer reads in GraphiQL's Docs panel has
a description: each type, field, argument, input field and enum value (issue 18, item 7).
GraphQL's own introspection types and built-in scalars are left out."""

from __future__ import annotations

from typing import Any

import graphql

from graphql_gateway.schema import schema

BUILT_IN_SCALARS = frozenset(graphql.specified_scalar_types)


def described(item: dict[str, Any]) -> bool:
    description = item.get("description")
    return isinstance(description, str) and bool(description.strip())


def undescribed(introspection: dict[str, Any]) -> list[str]:
    """The coordinates (`Type`, `Type.field`, `Type.field(arg:)`, `Enum.VALUE`) of every public
    part of the schema without a description."""
    missing: list[str] = []
    for named in introspection["__schema"]["types"]:
        name = named["name"]
        if name.startswith("__") or name in BUILT_IN_SCALARS:
            continue
        if not described(named):
            missing.append(name)
        for field in named.get("fields") or []:
            if not described(field):
                missing.append(f"{name}.{field['name']}")
            missing.extend(
                f"{name}.{field['name']}({arg['name']}:)"
                for arg in field["args"]
                if not described(arg)
            )
        missing.extend(
            f"{name}.{field['name']}"
            for field in named.get("inputFields") or []
            if not described(field)
        )
        missing.extend(
            f"{name}.{value['name']}"
            for value in named.get("enumValues") or []
            if not described(value)
        )
    return missing


def test_every_type_field_argument_and_enum_value_is_described() -> None:
    missing = undescribed(schema.introspect())
    assert not missing, "no description: " + ", ".join(missing)


def test_the_check_sees_what_is_missing() -> None:
    introspection = {
        "__schema": {
            "types": [
                {"name": "__Type", "description": None, "fields": []},
                {"name": "String", "description": None},
                {
                    "name": "Thing",
                    "description": "A thing.",
                    "fields": [
                        {
                            "name": "size",
                            "description": "",
                            "args": [{"name": "unit", "description": None}],
                        }
                    ],
                },
                {"name": "ThingInput", "description": "x", "inputFields": [{"name": "id"}]},
                {"name": "Kind", "description": "x", "enumValues": [{"name": "big"}]},
            ]
        }
    }
    assert undescribed(introspection) == [
        "Thing.size",
        "Thing.size(unit:)",
        "ThingInput.id",
        "Kind.big",
    ]
