"""Checks Bicep resources against Microsoft's published resource types (Azure/bicep-types-az), offline.

`azure_types.json` beside this file holds the generated types of exactly the resource types and API
versions that infra/ uses, trimmed (its `_source` names the repository, commit and files). For every
resource of a parsed Bicep file (pycep-parser), `TypeChecker.check` reports:

- a resource type or API version that is not vendored (a new type must be vendored before it is used);
- a property that the type does not have at that path (a misspelling, or a property of another version);
- a read-only property that is set (Azure computes it: `sku` of a site, `principalId` of an identity, ...);
- a literal string outside the type's allowed values (an enum, closed or extensible: bicep-types writes
  an extensible enum as `'A' | 'B' | string`, and this check holds it to the listed values), including
  the `@allowed` values of a parameter that feeds an enum property.

Values that are expressions (function calls other than `union`, property access, interpolation) cannot be
known before deployment and are accepted. Object variables, `union(...)` arguments, both branches of
`?:` and the body of a `for` are followed and checked like literals.

pycep gives identifiers and string literals the same shape (a Python `str`); a string that names a
declared parameter, variable, resource, module or loop variable is taken as a reference, any other as a
literal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

TYPES_FILE = Path(__file__).with_name("azure_types.json")

READ_ONLY = 2
# Bicep keywords of a resource body that are not ARM properties.
BICEP_KEYWORDS = {"parent", "scope", "dependsOn"}


@cache
def vendored() -> dict[str, Any]:
    return json.loads(TYPES_FILE.read_text(encoding="utf-8"))


def unwrap(config: Any) -> Any:
    """The body of a resource under `if (...)` or `for`."""
    while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def is_expression(value: Any) -> bool:
    """A parsed function call, operator or `for`, not an object literal (which may have an `operator` key)."""
    if not isinstance(value, dict):
        return False
    if set(value) == {"loop_type", "condition", "config"}:
        return True
    if len(value) != 1:
        return False
    (key, inner), *_ = value.items()
    return key in ("function", "operator") and isinstance(inner, dict) and "type" in inner


def strip_key(key: str) -> str:
    return key[1:-1] if len(key) >= 2 and key[0] == key[-1] == "'" else key


def loop_names(value: Any) -> set[str]:
    """Names of every `for` loop variable inside a parsed value."""
    names: set[str] = set()
    if isinstance(value, dict):
        loop = value.get("loop_type")
        if isinstance(loop, dict):
            detail = loop.get("detail", {})
            for key in ("item_name", "index_name"):
                if isinstance(detail.get(key), str):
                    names.add(detail[key])
        for item in value.values():
            names |= loop_names(item)
    elif isinstance(value, list):
        for item in value:
            names |= loop_names(item)
    return names


@dataclass
class TypeChecker:
    """Checks the resources of one parsed Bicep document."""

    document: dict[str, Any]
    label: str = "<bicep>"
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        doc = self.document
        self.params: dict[str, Any] = doc.get("parameters", {})
        self.variables: dict[str, Any] = doc.get("variables", {})
        self.symbols = (
            set(self.params)
            | set(self.variables)
            | set(doc.get("resources", {}))
            | set(doc.get("modules", {}))
            | loop_names(doc)
        )
        self.types: list[dict[str, Any]] = vendored()["types"]
        self._resolving: set[str] = set()

    # --- entry point --------------------------------------------------------------------------------

    def check(self) -> list[str]:
        for name, resource in self.document.get("resources", {}).items():
            key = f"{resource['type']}@{resource['api_version']}"
            where = f"{self.label}: resource {name} ({key})"
            body_index = vendored()["resources"].get(key)
            if body_index is None:
                self.problems.append(f"{where}: type and API version not in tests/infra/azure_types.json")
                continue
            if resource.get("existing"):
                continue  # only name and scope: nothing is written
            body = unwrap(resource["config"])
            if not isinstance(body, dict):
                continue
            body = {key: value for key, value in body.items() if key not in BICEP_KEYWORDS}
            self._value(body, body_index, where)
        return self.problems

    # --- values -------------------------------------------------------------------------------------

    def _value(self, value: Any, type_index: int, where: str) -> None:
        expected = self.types[type_index]
        kind = expected["kind"]
        if value is None or kind == "any":
            return
        if is_expression(value):
            self._expression(value, type_index, where)
            return
        if isinstance(value, str) and value in self.symbols:
            self._reference(value, type_index, where)
            return
        if kind == "union":
            self._union(value, expected, where)
            return
        if isinstance(value, str):
            self._string(value, type_index, where)
        elif isinstance(value, bool):
            if kind != "bool":
                self.problems.append(f"{where}: {value!r} is a bool, the type wants {kind}")
        elif isinstance(value, int):
            if kind != "int":
                self.problems.append(f"{where}: {value!r} is a number, the type wants {kind}")
        elif isinstance(value, dict):
            self._object(value, expected, where)
        elif isinstance(value, list):
            if kind != "array":
                self.problems.append(f"{where}: an array, the type wants {kind}")
                return
            for number, item in enumerate(value):
                self._value(item, expected["item"], f"{where}[{number}]")

    def _expression(self, value: dict[str, Any], type_index: int, where: str) -> None:
        if "loop_type" in value:
            expected = self.types[type_index]
            item = expected["item"] if expected["kind"] == "array" else type_index
            self._value(value.get("config"), item, where)
            return
        if "operator" in value and value["operator"]["type"] == "conditional":
            operands = value["operator"]["operands"]
            self._value(operands["true_value"], type_index, where)
            self._value(operands["false_value"], type_index, where)
            return
        if "function" in value and value["function"]["type"] == "union":
            for argument in value["function"]["parameters"].values():
                self._value(argument, type_index, where)
        # any other expression is only known at deployment

    def _string(self, value: str, type_index: int, where: str) -> None:
        expected = self.types[type_index]
        if "${" in value:
            return  # interpolation: a string whose value is known at deployment
        kind = expected["kind"]
        if kind == "literal" and value != expected["value"]:
            self.problems.append(f"{where}: {value!r} is not allowed (only {expected['value']!r})")
        elif kind not in ("string", "literal"):
            self.problems.append(f"{where}: {value!r} is a string, the type wants {kind}")

    def _reference(self, name: str, type_index: int, where: str) -> None:
        if name in self.variables and name not in self._resolving:
            self._resolving.add(name)
            try:
                self._value(self.variables[name]["value"], type_index, f"{where} (var {name})")
            finally:
                self._resolving.discard(name)
        elif name in self.params:
            allowed = [d["argument"] for d in self.params[name].get("decorators", []) if d.get("type") == "allowed"]
            for values in allowed:
                for number, item in enumerate(values):
                    if isinstance(item, str) and item not in self.symbols:
                        self._value(item, type_index, f"{where} (param {name} @allowed[{number}])")

    def _union(self, value: Any, expected: dict[str, Any], where: str) -> None:
        elements = [self.types[index] for index in expected["elements"]]
        if isinstance(value, str) and value not in self.symbols and "${" not in value:
            # An extensible enum (literals | string) is held to its literals: the resource provider
            # accepts the values its API version lists, and a newer value needs newer vendored types.
            literals = [e["value"] for e in elements if e["kind"] == "literal"]
            if value in literals or (not literals and any(e["kind"] in ("string", "any") for e in elements)):
                return
            if literals:
                self.problems.append(f"{where}: {value!r} is not one of the allowed values {sorted(literals)}")
                return
        # the first element the value fits decides; report the first element's problems otherwise
        first: list[str] | None = None
        for index in expected["elements"]:
            trial = TypeChecker(self.document, self.label)
            trial._value(value, index, where)
            if not trial.problems:
                return
            first = first if first is not None else trial.problems
        self.problems.extend(first or [])

    def _object(self, value: dict[str, Any], expected: dict[str, Any], where: str) -> None:
        kind = expected["kind"]
        if kind == "discriminated":
            properties = dict(expected["baseProperties"])
            tag = value.get(expected["discriminator"])
            if isinstance(tag, str) and tag in expected["elements"]:
                properties.update(self.types[expected["elements"][tag]]["properties"])
            else:
                for index in expected["elements"].values():
                    properties.update(self.types[index]["properties"])
            expected = {"kind": "object", "properties": properties}
        elif kind != "object":
            self.problems.append(f"{where}: an object, the type wants {kind}")
            return
        properties = expected["properties"]
        for raw_key, item in value.items():
            key = strip_key(raw_key)
            path = f"{where}.{key}"
            if key in properties:
                prop = properties[key]
                if prop["flags"] & READ_ONLY:
                    self.problems.append(f"{path}: read-only property (Azure sets it)")
                    continue
                self._value(item, prop["type"], path)
            elif "additionalProperties" in expected:
                self._value(item, expected["additionalProperties"], path)
            else:
                known = ", ".join(sorted(properties))
                self.problems.append(f"{path}: no such property at this path (known: {known})")
