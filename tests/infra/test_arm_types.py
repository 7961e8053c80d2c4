"""Every resource of every template under infra/ against Microsoft's published resource types.

The types are vendored in tests/infra/azure_types.json (from Azure/bicep-types-az, commit in its
`_source`); tests/infra/arm_types.py is the checker. The snippet tests show that it fails on what Azure
would refuse: a misspelled property, a read-only property, a value outside an enum.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pycep import BicepParser

from tests.infra.arm_types import TypeChecker, vendored

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))


def check_text(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "snippet.bicep"
    path.write_text(text, encoding="utf-8")
    return TypeChecker(BicepParser().parse(file_path=path), "snippet.bicep").check()


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


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_resource_matches_its_published_type(path: Path):
    problems = TypeChecker(BicepParser().parse(file_path=path), str(path.relative_to(ROOT))).check()
    assert not problems, "\n".join(problems)


def test_every_type_the_templates_use_is_vendored_and_every_vendored_type_is_used():
    used = set()
    for path in BICEP_FILES:
        for resource in BicepParser().parse(file_path=path).get("resources", {}).values():
            used.add(f"{resource['type']}@{resource['api_version']}")
    assert used == set(vendored()["resources"]), "vendor exactly the types infra/ uses"


def test_vendored_types_name_their_source():
    source = vendored()["_source"]
    assert source["repository"] == "https://github.com/Azure/bicep-types-az"
    assert len(source["commit"]) == 40
    assert all(f.startswith("generated/") and f.endswith("/types.json") for f in source["files"])


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
