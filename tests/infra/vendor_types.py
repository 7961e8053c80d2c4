"""Vendors Microsoft's generated resource types (Azure/bicep-types-az) into tests/infra/azure_types.json.

`VENDORED` below is the one list of what is vendored: each upstream file and the resource types (with API
version) taken from it. The templates under infra/ must use exactly these (tests/infra/test_arm_types.py).

Re-vendor from a checkout or bare clone of https://github.com/Azure/bicep-types-az (any commit):

    .venv/bin/python -m tests.infra.vendor_types /path/to/bicep-types-az [--commit <sha>]

It reads each file at that commit (`git show <commit>:<path>`), records the commit, the file's git blob id and
its SHA-256 in `_source`, and writes the trimmed types: only the body of each listed resource type and the
types it references, descriptions dropped, `$ref` replaced by indexes into `types`. Nothing else is changed:
a test that needs a different answer from these types needs different upstream types, not an edit here.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

TYPES_FILE = Path(__file__).with_name("azure_types.json")
REPOSITORY = "https://github.com/Azure/bicep-types-az"

# The one list of vendored files, each with the resource types taken from it.
VENDORED: dict[str, list[str]] = {
    "generated/resources_11/microsoft.resources/2024-03-01/types.json": [
        "Microsoft.Resources/resourceGroups@2024-03-01",
    ],
    "generated/msi/microsoft.managedidentity/2023-01-31/types.json": [
        "Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31",
    ],
    "generated/web/microsoft.web/2024-04-01/types.json": [
        "Microsoft.Web/serverfarms@2024-04-01",
        "Microsoft.Web/sites@2024-04-01",
        "Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01",
    ],
    "generated/storage/microsoft.storage/2023-05-01/types.json": [
        "Microsoft.Storage/storageAccounts@2023-05-01",
        "Microsoft.Storage/storageAccounts/blobServices@2023-05-01",
        "Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01",
        "Microsoft.Storage/storageAccounts/tableServices@2023-05-01",
        "Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01",
        "Microsoft.Storage/storageAccounts/queueServices@2023-05-01",
        "Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01",
    ],
    "generated/operationalinsights/microsoft.operationalinsights/2023-09-01/types.json": [
        "Microsoft.OperationalInsights/workspaces@2023-09-01",
    ],
    "generated/applicationinsights/microsoft.insights/2020-02-02/types.json": [
        "Microsoft.Insights/components@2020-02-02",
    ],
    "generated/applicationinsights/microsoft.insights/2023-06-01/types.json": [
        "Microsoft.Insights/workbooks@2023-06-01",
    ],
    "generated/keyvault/microsoft.keyvault/2023-07-01/types.json": [
        "Microsoft.KeyVault/vaults@2023-07-01",
    ],
    "generated/authorization/microsoft.authorization/2022-04-01/types.json": [
        "Microsoft.Authorization/roleAssignments@2022-04-01",
    ],
    "generated/monitor_1/microsoft.insights/2021-05-01-preview/types.json": [
        "Microsoft.Insights/diagnosticSettings@2021-05-01-preview",
    ],
    "generated/monitor_1/microsoft.insights/2023-01-01/types.json": [
        "Microsoft.Insights/actionGroups@2023-01-01",
    ],
    "generated/monitor_1/microsoft.insights/2023-12-01/types.json": [
        "Microsoft.Insights/scheduledQueryRules@2023-12-01",
    ],
    # Event Grid (issue 19): the optional topic and its webhook subscription. 2025-02-15 is the newest
    # stable version, as in azure-rest-api-specs specification/eventgrid/resource-manager/Microsoft.EventGrid/
    # stable/2025-02-15/EventGrid.json.
    "generated/eventgrid/microsoft.eventgrid/2025-02-15/types.json": [
        "Microsoft.EventGrid/topics@2025-02-15",
        "Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15",
    ],
}

TRIMMED = (
    "Only the body type of each resource type listed in 'resources' and the types it references; "
    "descriptions dropped; '$ref' replaced by indexes into 'types'. Property flags as in bicep-types: "
    "1 Required, 2 ReadOnly, 4 WriteOnly, 8 DeployTimeConstant, 16 Identifier."
)


def ref_index(ref: dict[str, str]) -> int:
    return int(ref["$ref"].removeprefix("#/"))


class Trimmer:
    """Copies the types reachable from resource bodies of one upstream file into one output list."""

    def __init__(self, upstream: list[dict[str, Any]], out: list[dict[str, Any]]) -> None:
        self.upstream = upstream
        self.out = out
        self.seen: dict[int, int] = {}

    def take(self, index: int) -> int:
        if index in self.seen:
            return self.seen[index]
        position = len(self.out)
        self.seen[index] = position
        self.out.append({})  # placeholder: a type may refer to itself
        self.out[position] = self.convert(self.upstream[index])
        return position

    def properties(self, props: dict[str, Any]) -> dict[str, Any]:
        return {
            name: {"type": self.take(ref_index(prop["type"])), "flags": prop.get("flags", 0)}
            for name, prop in props.items()
        }

    def convert(self, item: dict[str, Any]) -> dict[str, Any]:
        kind = item["$type"]
        if kind == "ObjectType":
            converted: dict[str, Any] = {
                "kind": "object",
                "name": item["name"],
                "properties": self.properties(item.get("properties", {})),
            }
            if "additionalProperties" in item:
                converted["additionalProperties"] = self.take(ref_index(item["additionalProperties"]))
            return converted
        if kind == "DiscriminatedObjectType":
            return {
                "kind": "discriminated",
                "name": item["name"],
                "discriminator": item["discriminator"],
                "baseProperties": self.properties(item.get("baseProperties", {})),
                "elements": {tag: self.take(ref_index(ref)) for tag, ref in item["elements"].items()},
            }
        if kind == "StringLiteralType":
            return {"kind": "literal", "value": item["value"]}
        if kind == "UnionType":
            return {"kind": "union", "elements": [self.take(ref_index(ref)) for ref in item["elements"]]}
        if kind == "ArrayType":
            converted = {"kind": "array", "item": self.take(ref_index(item["itemType"]))}
            converted.update({k: item[k] for k in ("minLength", "maxLength") if k in item})
            return converted
        if kind == "StringType":
            limits = ("minLength", "maxLength", "pattern", "sensitive")
            return {"kind": "string", **{k: item[k] for k in limits if k in item}}
        if kind == "IntegerType":
            return {"kind": "int", **{k: item[k] for k in ("minValue", "maxValue") if k in item}}
        if kind == "BooleanType":
            return {"kind": "bool"}
        if kind == "AnyType":
            return {"kind": "any"}
        if kind == "NullType":
            return {"kind": "null"}
        raise ValueError(f"type {kind} is not handled by the vendoring script")


def git_show(upstream: Path, commit: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", str(upstream), "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def git_blob(upstream: Path, commit: str, path: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(upstream), "rev-parse", f"{commit}:{path}"], check=True, capture_output=True, text=True
    )
    return proc.stdout.strip()


def build(upstream: Path, commit: str) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "-C", str(upstream), "rev-parse", commit], check=True, capture_output=True, text=True
    ).stdout.strip()
    types: list[dict[str, Any]] = []
    resources: dict[str, int] = {}
    files = []
    for path, wanted in VENDORED.items():
        raw = git_show(upstream, commit, path)
        digest = hashlib.sha256(raw).hexdigest()
        files.append({"path": path, "sha256": digest, "gitBlob": git_blob(upstream, commit, path)})
        upstream_types = json.loads(raw)
        bodies = {
            item["name"]: ref_index(item["body"]) for item in upstream_types if item.get("$type") == "ResourceType"
        }
        trimmer = Trimmer(upstream_types, types)
        for name in wanted:
            if name not in bodies:
                raise KeyError(f"{name} is not a resource type of {path} at {commit}")
            resources[name] = trimmer.take(bodies[name])
    return {
        "_source": {"repository": REPOSITORY, "commit": commit, "files": files, "trimmed": TRIMMED},
        "resources": resources,
        "types": types,
    }


def dump(document: dict[str, Any]) -> str:
    """`_source` and `resources` indented, then one type per line (a readable diff when re-vendoring)."""
    head = {key: value for key, value in document.items() if key != "types"}
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    lines = [json.dumps(item, separators=(",", ":"), ensure_ascii=False) for item in document["types"]]
    return text + ',\n"types": [\n' + ",\n".join(lines) + "\n]\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path, help="a clone (bare or not) of Azure/bicep-types-az")
    parser.add_argument("--commit", default="HEAD", help="commit to vendor from (default: HEAD)")
    args = parser.parse_args(argv)
    TYPES_FILE.write_text(dump(build(args.upstream, args.commit)), encoding="utf-8")
    print(f"wrote {TYPES_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
