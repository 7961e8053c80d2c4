"""Checks Bicep resources against Microsoft's published resource types (Azure/bicep-types-az), offline.

`azure_types.json` beside this file holds the generated types of exactly the resource types and API
versions that infra/ uses, trimmed (its `_source` names the repository, commit, and each file with its git
blob id and SHA-256; `vendor_types.py` holds the list and re-vendors). For every resource of a parsed Bicep
file (pycep-parser), `TypeChecker.check` reports:

- a resource type or API version that is not vendored (a new type must be vendored before it is used);
- a property that the type does not have at that path (a misspelling, or a property of another version);
- a read-only property that is set (Azure computes it: `sku` of a site, `principalId` of an identity, ...);
- a required property that an object literal leaves out (a workbook without `displayName`, an action
  group without `location`, a role assignment without `principalId`);
- a literal string outside the type's allowed values (an enum, closed or extensible: bicep-types writes
  an extensible enum as `'A' | 'B' | string`, and this check holds it to the listed values), or outside
  its length and pattern limits (an invalid storage account name);
- a literal number outside the type's minimum and maximum;
- a value wrapped in `any()` (which turns the compiler's type check off) on a line that does not say why
  in a `//` comment.

A parameter stands for every value that can reach it: its default, its `@allowed` values, and, with
`check_files`, what each module call passes to it (a literal `runtimeName: 'pyton'` given to app/api.bicep
is checked where site-flex.bicep finally uses it). A module call is also checked against the module's
parameters: unknown or missing parameters, and values outside their `@allowed`, `@minValue`/`@maxValue` and
`@minLength`/`@maxLength` (what `az bicep build` refuses, e.g. `retentionInDays: 5000` for a parameter that
allows 730 at most).

Values that are expressions (function calls other than `union`, property access, interpolation) cannot be
known before deployment and are accepted. Object variables, `union(...)` arguments (each may be a part of
the object, so none is held to the required properties), both branches of `?:` and the body of a `for` are
followed and checked like literals.

pycep gives identifiers and string literals the same shape (a Python `str`); a string that names a
declared parameter, variable, resource, module or loop variable is taken as a reference, any other as a
literal.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

TYPES_FILE = Path(__file__).with_name("azure_types.json")

REQUIRED = 1
READ_ONLY = 2
# Bicep keywords of a resource body that are not ARM properties.
BICEP_KEYWORDS = {"parent", "scope", "dependsOn"}
# `any(` as a call, in the code part of a line (before `//`).
ANY_CALL = re.compile(r"(?<![\w.])any\(")

# Types made from a module parameter's declaration (type and decorators), by negative index; shared by
# every checker so that a value followed into another file is checked against the same type.
_SYNTHETIC: dict[int, dict[str, Any]] = {}
_NEXT_SYNTHETIC = itertools.count(-1, -1)


@cache
def vendored() -> dict[str, Any]:
    return json.loads(TYPES_FILE.read_text(encoding="utf-8"))


def type_at(index: int) -> dict[str, Any]:
    return _SYNTHETIC[index] if index < 0 else vendored()["types"][index]


def unwrap(config: Any) -> Any:
    """The body of a resource or module under `if (...)` or `for`."""
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


def decorators(declaration: dict[str, Any]) -> dict[str, Any]:
    return {d["type"]: d.get("argument") for d in declaration.get("decorators", [])}


def parameter_type(declaration: dict[str, Any]) -> int:
    """A synthetic type for what a parameter accepts (its type and its decorators)."""
    found = decorators(declaration)
    kind = declaration.get("type")
    spec: dict[str, Any]
    if "allowed" in found:
        spec = {"kind": "enum", "values": list(found["allowed"])}
    elif kind == "int":
        spec = {"kind": "int"}
        for decorator, key in (("min_value", "minValue"), ("max_value", "maxValue")):
            if decorator in found:
                spec[key] = found[decorator]
    elif kind == "string":
        spec = {"kind": "string"}
        for decorator, key in (("min_length", "minLength"), ("max_length", "maxLength")):
            if decorator in found:
                spec[key] = found[decorator]
    elif kind == "bool":
        spec = {"kind": "bool"}
    else:
        spec = {"kind": "any"}  # object and array parameters take any shape
    index = next(_NEXT_SYNTHETIC)
    _SYNTHETIC[index] = spec
    return index


@dataclass
class Incoming:
    """A value that a module call in `caller` passes to a parameter of the checked file."""

    value: Any
    caller: TypeChecker
    label: str


@dataclass
class TypeChecker:
    """Checks the resources of one parsed Bicep document (and the module calls it makes)."""

    document: dict[str, Any]
    label: str = "<bicep>"
    text: str | None = None
    incoming: dict[str, list[Incoming]] = field(default_factory=dict)
    callees: dict[str, dict[str, Any]] = field(default_factory=dict)
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
        self._resolving: set[str] = set()

    def _trial(self) -> TypeChecker:
        return TypeChecker(self.document, self.label, self.text, self.incoming, self.callees)

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
        for name, callee in self.callees.items():
            self._module_call(name, callee)
        self._any_calls()
        return self.problems

    def _module_call(self, name: str, callee: dict[str, Any]) -> None:
        where = f"{self.label}: module {name}"
        body = unwrap(self.document["modules"][name]["config"])
        passed = body.get("params", {}) if isinstance(body, dict) else {}
        declared = callee.get("parameters", {})
        for param_name, declaration in declared.items():
            if param_name not in passed and declaration.get("default") is None:
                self.problems.append(f"{where}: required parameter {param_name} is not given")
        for raw, value in passed.items():
            param_name = strip_key(raw)
            if param_name not in declared:
                self.problems.append(f"{where}.{param_name}: the module has no such parameter")
                continue
            self._value(value, parameter_type(declared[param_name]), f"{where}.{param_name}")

    def _any_calls(self) -> None:
        """`any()` turns the compiler's type check off: each use says why, in a comment on its line."""
        for number, line in enumerate((self.text or "").splitlines(), start=1):
            code, _, comment = line.partition("//")
            if ANY_CALL.search(code) and not comment.strip():
                self.problems.append(f"{self.label}:{number}: any() without a comment saying why: {line.strip()}")

    # --- values -------------------------------------------------------------------------------------

    def _value(self, value: Any, type_index: int, where: str, partial: bool = False) -> None:
        expected = type_at(type_index)
        kind = expected["kind"]
        if value is None or kind == "any":
            return
        if is_expression(value):
            self._expression(value, type_index, where, partial)
            return
        if isinstance(value, str) and value in self.symbols:
            self._reference(value, type_index, where, partial)
            return
        if kind == "union":
            self._union(value, expected, where, partial)
            return
        if kind == "enum":
            if value not in expected["values"]:
                self.problems.append(f"{where}: {value!r} is not one of the allowed values {expected['values']}")
            return
        if isinstance(value, str):
            self._string(value, expected, where)
        elif isinstance(value, bool):
            if kind != "bool":
                self.problems.append(f"{where}: {value!r} is a bool, the type wants {kind}")
        elif isinstance(value, int):
            self._number(value, expected, where)
        elif isinstance(value, dict):
            self._object(value, expected, where, partial)
        elif isinstance(value, list):
            if kind != "array":
                self.problems.append(f"{where}: an array, the type wants {kind}")
                return
            for number, item in enumerate(value):
                self._value(item, expected["item"], f"{where}[{number}]")

    def _expression(self, value: dict[str, Any], type_index: int, where: str, partial: bool) -> None:
        if "loop_type" in value:
            expected = type_at(type_index)
            item = expected["item"] if expected["kind"] == "array" else type_index
            self._value(value.get("config"), item, where)
            return
        if "operator" in value and value["operator"]["type"] == "conditional":
            operands = value["operator"]["operands"]
            self._value(operands["true_value"], type_index, where, partial)
            self._value(operands["false_value"], type_index, where, partial)
            return
        if "function" in value and value["function"]["type"] == "union":
            for argument in value["function"]["parameters"].values():
                self._value(argument, type_index, where, partial=True)
        # any other expression is only known at deployment

    def _string(self, value: str, expected: dict[str, Any], where: str) -> None:
        if "${" in value:
            return  # interpolation: a string whose value is known at deployment
        kind = expected["kind"]
        if kind == "literal":
            if value != expected["value"]:
                self.problems.append(f"{where}: {value!r} is not allowed (only {expected['value']!r})")
            return
        if kind != "string":
            self.problems.append(f"{where}: {value!r} is a string, the type wants {kind}")
            return
        if "minLength" in expected and len(value) < expected["minLength"]:
            self.problems.append(f"{where}: {value!r} is shorter than {expected['minLength']} characters")
        if "maxLength" in expected and len(value) > expected["maxLength"]:
            self.problems.append(f"{where}: {value!r} is longer than {expected['maxLength']} characters")
        if "pattern" in expected:
            try:
                pattern = re.compile(expected["pattern"])
            except re.error:
                return  # a .NET-only construct: the service checks it
            if not pattern.search(value):
                self.problems.append(f"{where}: {value!r} does not match the pattern {expected['pattern']}")

    def _number(self, value: int, expected: dict[str, Any], where: str) -> None:
        if expected["kind"] != "int":
            self.problems.append(f"{where}: {value!r} is a number, the type wants {expected['kind']}")
            return
        if "minValue" in expected and value < expected["minValue"]:
            self.problems.append(f"{where}: {value} is below the minimum {expected['minValue']}")
        if "maxValue" in expected and value > expected["maxValue"]:
            self.problems.append(f"{where}: {value} is above the maximum {expected['maxValue']}")

    def _reference(self, name: str, type_index: int, where: str, partial: bool) -> None:
        if name in self.variables and name not in self._resolving:
            self._resolving.add(name)
            try:
                self._value(self.variables[name]["value"], type_index, f"{where} (var {name})", partial)
            finally:
                self._resolving.discard(name)
        elif name in self.params:
            declaration = self.params[name]
            for number, item in enumerate(decorators(declaration).get("allowed", [])):
                if not (isinstance(item, str) and item in self.symbols):
                    self._value(item, type_index, f"{where} (param {name} @allowed[{number}])")
            default = declaration.get("default")
            if default is not None and not (isinstance(default, str) and default in self.symbols):
                self._value(default, type_index, f"{where} (param {name} default)", partial)
            for arrival in self.incoming.get(name, []):
                trial = arrival.caller._trial()
                trial._value(arrival.value, type_index, f"{where} (param {name} <- {arrival.label})", partial)
                self.problems.extend(trial.problems)

    def _union(self, value: Any, expected: dict[str, Any], where: str, partial: bool) -> None:
        elements = [type_at(index) for index in expected["elements"]]
        if isinstance(value, str) and value not in self.symbols and "${" not in value:
            # An extensible enum (literals | string) is held to its literals: the resource provider
            # accepts the values its API version lists, and a newer value needs newer vendored types.
            literals = [e["value"] for e in elements if e["kind"] == "literal"]
            if value in literals:
                return
            if literals:
                self.problems.append(f"{where}: {value!r} is not one of the allowed values {sorted(literals)}")
                return
        # the first element the value fits decides; report the first element's problems otherwise
        first: list[str] | None = None
        for index in expected["elements"]:
            trial = self._trial()
            trial._value(value, index, where, partial)
            if not trial.problems:
                return
            first = first if first is not None else trial.problems
        self.problems.extend(first or [])

    def _object(self, value: dict[str, Any], expected: dict[str, Any], where: str, partial: bool) -> None:
        kind = expected["kind"]
        if kind == "discriminated":
            properties = dict(expected["baseProperties"])
            tag = value.get(expected["discriminator"])
            if isinstance(tag, str) and tag in expected["elements"]:
                properties.update(type_at(expected["elements"][tag])["properties"])
            else:
                partial = True  # the variant is only known at deployment: its required properties too
                for index in expected["elements"].values():
                    properties.update(type_at(index)["properties"])
            expected = {"kind": "object", "properties": properties}
        elif kind != "object":
            self.problems.append(f"{where}: an object, the type wants {kind}")
            return
        properties = expected["properties"]
        given = {strip_key(key) for key in value}
        if not partial:
            for key, prop in properties.items():
                if prop["flags"] & REQUIRED and not prop["flags"] & READ_ONLY and key not in given:
                    self.problems.append(f"{where}.{key}: required property missing")
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


def check_files(paths: list[Path], root: Path) -> list[str]:
    """Checks every file and every module it calls, following module parameters from file to file."""
    documents: dict[Path, dict[str, Any]] = {}
    pending = [path.resolve() for path in paths]
    while pending:
        path = pending.pop()
        if path in documents:
            continue
        documents[path] = BicepParser().parse(file_path=path)
        for module in documents[path].get("modules", {}).values():
            if module.get("type") == "local":
                pending.append((path.parent / module["detail"]["path"]).resolve())

    def label(path: Path) -> str:
        return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)

    checkers: dict[Path, TypeChecker] = {}
    for path, document in documents.items():
        callees = {}
        for name, module in document.get("modules", {}).items():
            if module.get("type") == "local":
                callees[name] = documents[(path.parent / module["detail"]["path"]).resolve()]
        checkers[path] = TypeChecker(document, label(path), path.read_text(encoding="utf-8"), {}, callees)
    for path, document in documents.items():
        for name, module in document.get("modules", {}).items():
            if module.get("type") != "local":
                continue
            target = checkers[(path.parent / module["detail"]["path"]).resolve()]
            body = unwrap(module["config"])
            for raw, value in (body.get("params", {}) if isinstance(body, dict) else {}).items():
                arrival = Incoming(value, checkers[path], f"{label(path)} module {name}")
                target.incoming.setdefault(strip_key(raw), []).append(arrival)
    problems: list[str] = []
    for checker in checkers.values():
        problems.extend(checker.check())
    return problems
