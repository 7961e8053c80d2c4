"""Every resource of every template under infra/ against Microsoft's published resource types.

The types are vendored in tests/infra/azure_types.json (from Azure/bicep-types-az; commit, files and their
hashes in its `_source`, the list in tests/infra/vendor_types.py); tests/infra/arm_types.py is the checker.
The snippet tests show that it fails on what Azure would refuse: a misspelled property, a read-only
property, a missing required property, a value outside an enum, a number or string outside its limits.
The mistake tests make one deliberate mistake in a copy of infra/ each, and the check must find it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from pycep import BicepParser

from tests.infra.arm_types import TypeChecker, check_files, vendored
from tests.infra.vendor_types import REPOSITORY, VENDORED

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


def check_text(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "snippet.bicep"
    path.write_text(text, encoding="utf-8")
    return TypeChecker(BicepParser().parse(file_path=path), "snippet.bicep", text).check()


STORAGE = """
param location string = 'eastus'
resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {{
  name: 'stexample'
  location: location
  kind: 'StorageV2'
  sku: {{
    name: 'Standard_LRS'
  }}
  properties: {{
    {line}
  }}
}}
"""


def test_every_resource_and_module_call_matches_its_published_type():
    problems = check_files(BICEP_FILES, ROOT)
    assert not problems, "\n".join(problems)


def test_every_type_the_templates_use_is_vendored_and_every_vendored_type_is_used():
    used = set()
    for path in BICEP_FILES:
        for resource in BicepParser().parse(file_path=path).get("resources", {}).values():
            used.add(f"{resource['type']}@{resource['api_version']}")
    assert used == set(vendored()["resources"]), "vendor exactly the types infra/ uses"


def test_vendored_types_name_their_source_commit_and_hashes_and_follow_the_one_list():
    source = vendored()["_source"]
    assert source["repository"] == REPOSITORY == "https://github.com/Azure/bicep-types-az"
    assert re.fullmatch(r"[0-9a-f]{40}", source["commit"])
    assert [f["path"] for f in source["files"]] == list(VENDORED)
    for entry in source["files"]:
        assert entry["path"].startswith("generated/") and entry["path"].endswith("/types.json"), entry
        assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), entry
        assert re.fullmatch(r"[0-9a-f]{40}", entry["gitBlob"]), entry
    assert list(vendored()["resources"]) == [name for names in VENDORED.values() for name in names]


def test_event_grid_topic_and_subscription_types_are_vendored():
    names = ("Microsoft.EventGrid/topics@2025-02-15", "Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15")
    for name in names:
        assert name in vendored()["resources"], name
    assert any("microsoft.eventgrid/2025-02-15" in f["path"] for f in vendored()["_source"]["files"])


RULE = """
resource rule 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {{
  name: 'rule'
  location: 'eastus'
  properties: {{
    enabled: true
    scopes: [
      'x'
    ]
    criteria: {{
      allOf: []
    }}
    {line}
  }}
}}
"""


def test_scheduled_query_rules_2023_12_01_takes_resolve_configuration_as_upstream_names_it(tmp_path: Path):
    # Azure/bicep-types-az@1f896de2 (generated from azure-rest-api-specs@b7170cade0) and the TypeSpec-made
    # SDKs name it resolveConfiguration; an older swagger (azure-rest-api-specs@1b81b339) had
    # ruleResolveConfiguration, which Bicep refuses (BCP037, reported in Azure/bicep-registry-modules).
    ok = "resolveConfiguration: {\n      autoResolved: true\n      timeToResolve: 'PT10M'\n    }"
    assert check_text(tmp_path, RULE.format(line=ok)) == []
    problems = check_text(tmp_path, RULE.format(line=ok.replace("resolveConfiguration", "ruleResolveConfiguration")))
    assert len(problems) == 1 and "ruleResolveConfiguration: no such property" in problems[0]


def test_a_correct_snippet_passes(tmp_path: Path):
    assert check_text(tmp_path, STORAGE.format(line="minimumTlsVersion: 'TLS1_2'")) == []


def test_fails_on_a_misspelled_property(tmp_path: Path):
    problems = check_text(tmp_path, STORAGE.format(line="minimumTlsVerison: 'TLS1_2'"))
    assert len(problems) == 1 and "properties.minimumTlsVerison: no such property" in problems[0]


def test_fails_on_a_misspelled_nested_property_of_a_site(tmp_path: Path):
    text = """
resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'app'
  location: 'eastus'
  properties: {
    siteConfig: {
      minTlsVersoin: '1.2'
    }
  }
}
"""
    problems = check_text(tmp_path, text)
    assert len(problems) == 1 and "siteConfig.minTlsVersoin: no such property" in problems[0]


def test_fails_on_a_read_only_property(tmp_path: Path):
    problems = check_text(tmp_path, STORAGE.format(line="provisioningState: 'Succeeded'"))
    assert len(problems) == 1 and "properties.provisioningState: read-only" in problems[0]


def test_fails_on_a_read_only_property_of_a_site(tmp_path: Path):
    text = """
resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'app'
  location: 'eastus'
  properties: {
    defaultHostName: 'app.azurewebsites.net'
  }
}
"""
    problems = check_text(tmp_path, text)
    assert len(problems) == 1 and "properties.defaultHostName: read-only" in problems[0]


def test_fails_on_a_wrong_enum_value(tmp_path: Path):
    problems = check_text(tmp_path, STORAGE.format(line="minimumTlsVersion: 'TLS1_4'"))
    assert len(problems) == 1 and "'TLS1_4' is not one of the allowed values" in problems[0]


def test_fails_on_a_wrong_enum_value_behind_a_condition_a_variable_or_a_parameter(tmp_path: Path):
    text = """
param flag bool = true
@allowed([
  'Standard_LRS'
  'Standard_XRS'
])
param skuName string = 'Standard_LRS'
var props = {
  accessTier: flag ? 'Hot' : 'Tepid'
}
resource st 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stexample'
  location: 'eastus'
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: union(props, { allowBlobPublicAccess: false })
}
"""
    problems = check_text(tmp_path, text)
    assert any("'Tepid' is not one of the allowed values" in p for p in problems), problems
    assert any("'Standard_XRS' is not one of the allowed values" in p for p in problems), problems
    assert len(problems) == 2, problems


def test_fails_on_an_app_setting_list_of_the_wrong_shape(tmp_path: Path):
    text = """
var settings = {
  A: '1'
}
resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: 'app'
  location: 'eastus'
  properties: {
    siteConfig: {
      appSettings: [for s in items(settings): {
        name: s.key
        vaule: s.value
      }]
    }
  }
}
"""
    problems = check_text(tmp_path, text)
    assert len(problems) == 1 and "appSettings.vaule: no such property" in problems[0]


def test_fails_on_an_api_version_that_is_not_vendored(tmp_path: Path):
    text = STORAGE.replace("2023-05-01", "2019-06-01").format(line="minimumTlsVersion: 'TLS1_2'")
    problems = check_text(tmp_path, text)
    assert len(problems) == 1 and "not in tests/infra/azure_types.json" in problems[0]


def test_fails_on_a_missing_required_property(tmp_path: Path):
    text = """
resource group 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag'
  properties: {
    groupShortName: 'ag'
    enabled: true
  }
}
"""
    problems = check_text(tmp_path, text)
    assert problems == [
        "snippet.bicep: resource group (Microsoft.Insights/actionGroups@2023-01-01).location: required property missing"
    ]


def test_a_union_argument_is_not_held_to_the_required_properties(tmp_path: Path):
    text = """
var base = {
  displayName: 'x'
}
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: 'wb'
  location: 'eastus'
  kind: 'shared'
  properties: union(base, {
    category: 'workbook'
    serializedData: '{}'
  })
}
"""
    assert check_text(tmp_path, text) == []


def test_fails_on_a_number_outside_the_type_limits(tmp_path: Path):
    text = """
resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: 'stexample'
}
resource blob 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 5000
    }
  }
}
"""
    problems = check_text(tmp_path, text)
    assert len(problems) == 1 and "deleteRetentionPolicy.days: 5000 is above the maximum 365" in problems[0]


def test_fails_on_a_string_outside_the_type_length_and_pattern(tmp_path: Path):
    problems = check_text(tmp_path, STORAGE.replace("'stexample'", "'St_Example'").format(line=""))
    assert len(problems) == 1 and "'St_Example' does not match the pattern ^[a-z0-9]+$" in problems[0]
    problems = check_text(tmp_path, STORAGE.replace("'stexample'", "'ab'").format(line=""))
    assert len(problems) == 1 and "'ab' is shorter than 3 characters" in problems[0]


def test_a_parameter_default_is_checked_where_it_is_used(tmp_path: Path):
    text = STORAGE.replace("'stexample'", "accountName").replace(
        "param location string = 'eastus'", "param location string = 'eastus'\nparam accountName string = 'Bad-Name'"
    )
    problems = check_text(tmp_path, text.format(line=""))
    assert len(problems) == 1 and "(param accountName default): 'Bad-Name' does not match" in problems[0]


def test_any_is_flagged_unless_its_line_says_why(tmp_path: Path):
    unexplained = check_text(tmp_path, STORAGE.format(line="minimumTlsVersion: any('TLS1_2')"))
    assert len(unexplained) == 1 and "any() without a comment saying why" in unexplained[0]
    explained = STORAGE.format(line="minimumTlsVersion: any('TLS1_2') // any: a newer value than the vendored API")
    assert check_text(tmp_path, explained) == []


# --- one deliberate mistake in a copy of infra/, which the check must find ---------------------------

MISTAKES = {
    "workbook without displayName": (
        "core/monitor/operations.bicep",
        "    displayName: 'callkeeper operations'\n",
        "",
        "workbook (Microsoft.Insights/workbooks@2023-06-01).properties.displayName: required property missing",
    ),
    "workbook without category": (
        "core/monitor/operations.bicep",
        "    category: 'workbook'\n",
        "",
        "workbook (Microsoft.Insights/workbooks@2023-06-01).properties.category: required property missing",
    ),
    "action group without location": (
        "core/monitor/operations.bicep",
        "  location: 'Global'\n",
        "",
        "actionGroup (Microsoft.Insights/actionGroups@2023-01-01).location: required property missing",
    ),
    "role assignment without principalId": (
        "app/rbac.bicep",
        "    principalId: managedIdentityPrincipalId\n",
        "",
        "(Microsoft.Authorization/roleAssignments@2022-04-01).properties.principalId: required property missing",
    ),
    "retentionInDays 5000 passed to the monitoring module": (
        "main.bicep",
        "    entraAuth: applicationInsightsEntraAuth\n",
        "    entraAuth: applicationInsightsEntraAuth\n    retentionInDays: 5000\n",
        "infra/main.bicep: module monitoring.retentionInDays: 5000 is above the maximum 730",
    ),
    "an invalid storage account name literal": (
        "main.bicep",
        "    name: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'",
        "    name: 'St_Callkeeper'",
        "(param name <- infra/main.bicep module storage): 'St_Callkeeper' does not match the pattern ^[a-z0-9]+$",
    ),
    "runtimeName pyton passed to a module": (
        "main.bicep",
        "runtimeName: 'python'",
        "runtimeName: 'pyton'",
        "functionAppConfig.runtime.name (param runtimeName <- infra/app/api.bicep module flexSite)"
        " (param runtimeName <- infra/main.bicep module api): 'pyton' is not one of the allowed values",
    ),
    "any() without a reason": (
        "core/monitor/monitoring.bicep",
        "retentionInDays: retentionInDays",
        "retentionInDays: any(retentionInDays)",
        "any() without a comment saying why",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_the_check_finds_each_deliberate_mistake_in_the_real_templates(tmp_path: Path, mistake: str):
    relative, old, new, expected = MISTAKES[mistake]
    shutil.copytree(INFRA, tmp_path / "infra")
    target = tmp_path / "infra" / relative
    text = target.read_text(encoding="utf-8")
    assert old in text, f"the mistake no longer applies to {relative}: update it"
    target.write_text(text.replace(old, new, 1), encoding="utf-8")
    problems = check_files(sorted((tmp_path / "infra").rglob("*.bicep")), tmp_path)
    assert any(expected in problem for problem in problems), "\n".join(problems) or "no problem found"
