"""Offline checks of the Bicep templates under infra/, over their parse trees (pycep-parser).

No Bicep CLI and no Azure: these read the templates the way `az bicep build` would see them and assert
what the deployment must guarantee (settings, identities, roles, storage security, azd wiring).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from tests.infra.arm_types import unwrap

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
API = INFRA / "app" / "api.bicep"
SITE_FLEX = INFRA / "app" / "site-flex.bicep"
SITE_PREMIUM = INFRA / "app" / "site-premium.bicep"
OPERATIONS = INFRA / "core" / "monitor" / "operations.bicep"
RBAC = INFRA / "app" / "rbac.bicep"
STORAGE = INFRA / "core" / "storage" / "storage-account.bicep"
PLAN = INFRA / "core" / "host" / "functions-plan.bicep"
KEY_VAULT = INFRA / "core" / "security" / "keyvault.bicep"
EVENTS = INFRA / "core" / "events" / "event-grid.bicep"
GUARD = INFRA / "core" / "guard" / "hosting-region.bicep"
MONITORING = INFRA / "core" / "monitor" / "monitoring.bicep"
CONTRACT = ROOT.parent / "shared" / "spec" / "contract.md"

BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# Every setting of the contract's Settings table, by the same name, AzureWebJobsStorage in identity form,
# and Application Insights with Entra authentication.
REQUIRED_SETTINGS = {
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "CALLS_TABLE_NAME",
    "CLEANUP_QUEUE_NAME",
    "KEEPALIVE_SCHEDULE",
    "KEEPALIVE_CONCURRENCY",
    "KEEPALIVE_REQUEST_TIMEOUT",
    "KEEPALIVE_AT_RISK_MINUTES",
    "KEEPALIVE_FANOUT_THRESHOLD",
    "KEEPALIVE_WORK_QUEUE_NAME",
    "CALL_EVENTS_QUEUE_NAME",
    "CALL_EVENTS_TOPIC_ENDPOINT",
    "GRAPH_TENANT_ID",
    "GRAPH_CLIENT_ID",
    "GRAPH_CLIENT_SECRET",
    "GRAPH_MANAGED_IDENTITY_CLIENT_ID",
    "GRAPH_CLOUD",
    "GRAPH_BASE_URL",
    "GRAPH_AUTHORITY_HOST",
    "GRAPH_DRY_RUN",
    "GRAPH_NOTIFICATION_OPENID_URL",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# Contract settings deliberately absent in Azure:
# - AzureWebJobsStorage: the connection-string form needs an account key; the identity form
#   (AzureWebJobsStorage__*) stands for it.
# - GRAPH_CLIENT_CERTIFICATE_PATH: a PEM file path is for local or dedicated hosting; a Flex Consumption app
#   runs from a read-only package with no certificate store, so in Azure the credential is the federated
#   credential (GRAPH_MANAGED_IDENTITY_CLIENT_ID) or a Key Vault reference (GRAPH_CLIENT_SECRET).
# - CALL_EVENTS_TOPIC_KEY: the Bicep topic disables local (key) authentication, so the app publishes with
#   Microsoft Entra ID as its storage identity; a key is only for local runs and stand-ins.
OMITTED_SETTINGS = {"AzureWebJobsStorage", "GRAPH_CLIENT_CERTIFICATE_PATH", "CALL_EVENTS_TOPIC_KEY"}

ROLE_IDS = {
    "8a0f0c08-91a1-4084-bc3d-661d67233fed": "Storage Queue Data Message Processor",
    "19e7f393-937e-4f77-808e-94535e297925": "Storage Queue Data Reader",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "d5a91429-5739-47e2-a06b-3470a27159e7": "EventGrid Data Sender",
}
# Every role assignment of the templates, each identity with only what its job needs, at the narrowest scope
# that works (see the comments at the top of app/rbac.bicep and core/events/event-grid.bicep):
# (file, resource) -> (role, principal parameter or expression, scope resource, condition)
EXPECTED_ROLES = {
    (RBAC, "blobRoleAssignment"): (
        "Storage Blob Data Owner",
        "managedIdentityPrincipalId",
        "storageAccount",
        "enableBlob",
    ),
    (RBAC, "queueRoleAssignment"): (
        "Storage Queue Data Contributor",
        "managedIdentityPrincipalId",
        "storageAccount",
        "enableQueue",
    ),
    (RBAC, "tableRoleAssignment"): (
        "Storage Table Data Contributor",
        "managedIdentityPrincipalId",
        "storageAccount",
        "enableTable",
    ),
    (RBAC, "monitoringRoleAssignment"): (
        "Monitoring Metrics Publisher",
        "managedIdentityPrincipalId",
        "applicationInsights",
        "applicationInsightsEntraAuth",
    ),
    (RBAC, "keyVaultRoleAssignment"): (
        "Key Vault Secrets User",
        "graphIdentityPrincipalId",
        "keyVault",
        "enableKeyVault",
    ),
    # the bot: a queue trigger's roles on the cleanup queue; on its poison queue, send (the host moves a
    # failing message there) and process (read and delete what landed there)
    (RBAC, "botQueueReaderAssignment"): ("Storage Queue Data Reader", "botPrincipalId", "cleanupQueue", "enableBot"),
    (RBAC, "botQueueRoleAssignment"): (
        "Storage Queue Data Message Processor",
        "botPrincipalId",
        "cleanupQueue",
        "enableBot",
    ),
    (RBAC, "botPoisonSenderAssignment"): (
        "Storage Queue Data Message Sender",
        "botPrincipalId",
        "cleanupPoisonQueue",
        "enableBot",
    ),
    (RBAC, "botPoisonProcessorAssignment"): (
        "Storage Queue Data Message Processor",
        "botPrincipalId",
        "cleanupPoisonQueue",
        "enableBot",
    ),
    # Event Grid: the app's storage identity publishes to the topic; the topic's identity dead-letters
    (EVENTS, "senderAssignment"): ("EventGrid Data Sender", "publisherPrincipalId", "topic", None),
    (EVENTS, "deadLetterAssignment"): (
        "Storage Blob Data Contributor",
        "topic.identity.principalId",
        "deadLetterContainer",
        "withWebhook",
    ),
}
# What main.bicep passes for each principal parameter: the identity module whose principalId it is, or
# None for main.bicep's own parameter (the bot).
PRINCIPAL_SOURCES = {
    "managedIdentityPrincipalId": "apiUserAssignedIdentity",
    "publisherPrincipalId": "apiUserAssignedIdentity",
    "graphIdentityPrincipalId": "graphUserAssignedIdentity",
    "botPrincipalId": None,
}

SECRET_MARKERS = (
    "listkeys",
    "accountkey=",
    "sharedaccesskey",
    "sharedaccesssignature",
    "listaccountsas",
    "listservicesas",
    "listconnectionstrings",
    "defaultendpointsprotocol",
    "instrumentationkey=",
)


@cache
def parser() -> BicepParser:
    return BicepParser()


@cache
def parse(path: Path) -> dict[str, Any]:
    return parser().parse(file_path=path)


def body(resource_or_module: dict[str, Any]) -> dict[str, Any]:
    """The object of a resource or module, whether or not it is deployed under `if (...)` or `for`."""
    return unwrap(resource_or_module["config"])


def condition(resource_or_module: dict[str, Any]) -> Any:
    config = resource_or_module["config"]
    return config["condition"] if set(config) == {"condition", "config"} else None


def variable(path: Path, name: str) -> Any:
    return parse(path)["variables"][name]["value"]


def param(path: Path, name: str) -> dict[str, Any]:
    return parse(path)["parameters"][name]


def resources_of_type(path: Path, resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: res
        for name, res in parse(path).get("resources", {}).items()
        if res["type"] == resource_type and not res["existing"]
    }


def module_named(name: str) -> dict[str, Any]:
    return parse(MAIN)["modules"][name]


def module_for(path: Path) -> tuple[str, dict[str, Any]]:
    """The module of main.bicep that deploys the file at `path`."""
    for name, module in parse(MAIN)["modules"].items():
        if (MAIN.parent / module["detail"]["path"]).resolve() == path.resolve():
            return name, module
    raise AssertionError(f"main.bicep deploys no module from {path.relative_to(ROOT)}")


def function_args(value: Any, function_type: str) -> list[Any]:
    assert isinstance(value, dict) and "function" in value, value
    assert value["function"]["type"] == function_type, value
    return list(value["function"]["parameters"].values())


def setting_objects(path: Path, value: Any) -> list[dict[str, Any]]:
    """The object literals an app-settings expression is made of: union() args, ?: branches, named vars."""
    if isinstance(value, str) and value in parse(path).get("variables", {}):
        return setting_objects(path, variable(path, value))
    if isinstance(value, dict) and "function" in value and value["function"]["type"] == "union":
        return [obj for arg in function_args(value, "union") for obj in setting_objects(path, arg)]
    if isinstance(value, dict) and "operator" in value and value["operator"]["type"] == "conditional":
        operands = value["operator"]["operands"]
        return setting_objects(path, operands["true_value"]) + setting_objects(path, operands["false_value"])
    if isinstance(value, dict) and "function" not in value and "operator" not in value:
        return [value]
    return []


@cache
def app_settings() -> dict[str, list[Any]]:
    """Every app setting the templates can give the function app, with each value it can take."""
    settings: dict[str, list[Any]] = {}
    # Both sites take the list app/api.bicep builds (appSettingsList) as their `appSettings` parameter.
    for site_file in (SITE_FLEX, SITE_PREMIUM):
        (site,) = resources_of_type(site_file, "Microsoft.Web/sites").values()
        assert body(site)["properties"]["siteConfig"]["appSettings"] == "appSettings"
        assert param(site_file, "appSettings")["type"] == "array"
    for module in ("flexSite", "premiumSite"):
        assert body(parse(API)["modules"][module])["params"]["appSettings"] == "appSettingsList"
    loop = variable(API, "appSettingsList")
    (source,) = function_args(loop["loop_type"]["detail"]["array_name"], "items")
    objects = setting_objects(API, source)
    # The `appSettings` parameter of app/api.bicep is what main.bicep passes in.
    assert "appSettings" in parse(API)["parameters"]
    objects += setting_objects(MAIN, body(module_named("api"))["params"]["appSettings"])
    for obj in objects:
        for key, value in obj.items():
            settings.setdefault(key.strip("'"), []).append(value)
    return settings


def walk(value: Any) -> list[str]:
    """Every string inside a parsed value (keys and values)."""
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in [str(key), *walk(item)]]
    if isinstance(value, list):
        return [s for item in value for s in walk(item)]
    return [str(value)] if value is not None else []


def contract_setting_names() -> set[str]:
    """Setting names of the contract's Settings table, when the shared spec sits beside the repository."""
    if not CONTRACT.exists():
        return set()
    text = CONTRACT.read_text(encoding="utf-8")
    section = text.split("## Settings", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Za-z_]+)` \|", section, flags=re.MULTILINE))


# --- every file parses ----------------------------------------------------------------------------------


def test_infra_has_the_expected_templates():
    for path in (MAIN, API, RBAC, STORAGE, PLAN, KEY_VAULT, MONITORING):
        assert path in BICEP_FILES, path


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_bicep_file_parses(path: Path):
    parsed = parse(path)
    if path == GUARD:  # a check with an output, no resource
        assert parsed.get("outputs") and not parsed.get("resources"), path
        return
    assert parsed.get("resources") or parsed.get("modules"), f"{path} declares nothing"


def test_modules_are_local_files_not_registry_modules():
    for path in BICEP_FILES:
        for name, module in parse(path).get("modules", {}).items():
            assert module["type"] == "local", f"{path.name}: module {name} is not a local file"
            assert (path.parent / module["detail"]["path"]).is_file(), f"{path.name}: {name} points nowhere"
        assert "br/public:" not in path.read_text(encoding="utf-8"), path


# --- main.bicep: azd layout ------------------------------------------------------------------------------


def test_main_is_subscription_scoped_with_resource_group_and_token():
    main = parse(MAIN)
    assert main["globals"]["scope"]["value"] == "subscription"
    assert resources_of_type(MAIN, "Microsoft.Resources/resourceGroups")
    token = variable(MAIN, "resourceToken")
    (unique,) = function_args(token, "to_lower")
    args = function_args(unique, "unique_string")
    assert args[1:] == ["environmentName", "location"]
    assert "subscription" in json.dumps(args[0])
    assert variable(MAIN, "tags") == {"'azd-env-name'": "environmentName"}
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text(encoding="utf-8"))
    for used in re.findall(r"abbrs\.(\w+)", MAIN.read_text(encoding="utf-8")):
        assert used in abbreviations, used


def test_every_resource_is_tagged_and_the_site_carries_the_azd_service_name():
    untaggable = {"Microsoft.Authorization/roleAssignments", "Microsoft.Insights/diagnosticSettings"}
    for path in BICEP_FILES:
        for name, res in parse(path).get("resources", {}).items():
            config = body(res)
            if res["existing"] or "parent" in config or res["type"] in untaggable:
                continue
            assert "tags" in config, f"{path.name}: {name} has no tags"
    for site_file in (SITE_FLEX, SITE_PREMIUM):
        (site,) = resources_of_type(site_file, "Microsoft.Web/sites").values()
        assert body(site)["tags"] == "tags"
    for module in ("flexSite", "premiumSite"):
        assert body(parse(API)["modules"][module])["params"]["tags"] == "siteTags"
    tags = function_args(variable(API, "siteTags"), "union")
    assert tags == ["tags", {"'azd-service-name'": "serviceName"}]
    assert param(API, "serviceName")["default"] == "api"
    assert body(module_named("api"))["params"]["serviceName"] == "api"
    for name in (
        "apiUserAssignedIdentity",
        "graphUserAssignedIdentity",
        "appServicePlan",
        "storage",
        "monitoring",
        "operations",
        "keyVault",
        "callEvents",
        "api",
    ):
        assert body(module_named(name))["params"]["tags"] == "tags", name


# --- app settings ----------------------------------------------------------------------------------------


def test_app_settings_cover_every_required_setting():
    missing = REQUIRED_SETTINGS - set(app_settings())
    assert not missing, f"app settings lack {sorted(missing)}"


def test_app_settings_cover_the_contract_settings_table():
    names = contract_setting_names()
    if not names:  # the shared spec is not beside this checkout; REQUIRED_SETTINGS carries the same names
        names = set(REQUIRED_SETTINGS)
    uncovered = names - set(app_settings()) - OMITTED_SETTINGS
    assert not uncovered, f"contract settings missing from the app settings: {sorted(uncovered)}"


def test_omitted_settings_are_absent():
    for name in OMITTED_SETTINGS:
        assert name not in app_settings(), name
    for path in BICEP_FILES:
        assert "GRAPH_CLIENT_CERTIFICATE_PATH:" not in path.read_text(encoding="utf-8"), path


def test_storage_settings_are_identity_based():
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == ["managedidentity"]
    assert settings["AzureWebJobsStorage__clientId"] == ["identityClientId"]
    for service in ("blob", "queue", "table"):
        (value,) = settings[f"AzureWebJobsStorage__{service}ServiceUri"]
        assert value["operator"]["type"] == "property_accessor"
        assert "primaryEndpoints" in json.dumps(value) and f'"{service}"' in json.dumps(value)
    # the blob, queue and table endpoints (and their roles) are all on
    assert variable(MAIN, "storageEndpointConfig") == {"enableBlob": True, "enableQueue": True, "enableTable": True}
    params = body(module_named("api"))["params"]
    for flag in ("enableBlob", "enableQueue", "enableTable"):
        assert params[flag]["operator"]["operands"]["operand_2"] == flag


def test_application_insights_uses_entra_authentication_when_ingestion_is_entra_only():
    settings = app_settings()
    (auth,) = settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
    assert auth == "ClientId=${identityClientId};Authorization=AAD"
    (_, conditional) = function_args(variable(API, "monitoringSettings"), "union")
    assert conditional["operator"]["operands"]["condition"] == "applicationInsightsEntraAuth"
    (conn,) = settings["APPLICATIONINSIGHTS_CONNECTION_STRING"]
    assert "ConnectionString" in json.dumps(conn) and "applicationInsights" in json.dumps(conn)


def test_exactly_one_graph_credential_is_set():
    value = variable(API, "graphCredentialSettings")
    operands = value["operator"]["operands"]
    assert operands["condition"] == "useSecret"
    assert variable(API, "useSecret")["operator"]["type"] == "equals"
    secret_branch, identity_branch = operands["true_value"], operands["false_value"]
    assert set(secret_branch) == {"GRAPH_CLIENT_SECRET"}
    assert secret_branch["GRAPH_CLIENT_SECRET"].startswith("@Microsoft.KeyVault(")
    # the Graph identity, not the app's (storage) identity
    assert identity_branch == {"GRAPH_MANAGED_IDENTITY_CLIENT_ID": "graphIdentityClientId"}
    settings = app_settings()
    assert len(settings["GRAPH_CLIENT_SECRET"]) == 1
    assert len(settings["GRAPH_MANAGED_IDENTITY_CLIENT_ID"]) == 1
    graph_credential = param(MAIN, "graphCredential")
    assert graph_credential["default"] == "managedIdentity"
    assert graph_credential["decorators"][-1]["argument"] == ["managedIdentity", "secret"]


def test_contract_settings_come_from_parameters_with_the_contract_defaults():
    settings = variable(MAIN, "contractAppSettings")
    expected = {
        "CALLS_TABLE_NAME": ("callsTableName", "activecalls"),
        "CLEANUP_QUEUE_NAME": ("cleanupQueueName", "call-cleanup"),
        "KEEPALIVE_WORK_QUEUE_NAME": ("keepAliveWorkQueueName", "keepalive-work"),
        "KEEPALIVE_SCHEDULE": ("keepAliveSchedule", "0 */10 * * * *"),
        "GRAPH_CLOUD": ("graphCloud", "global"),
        "GRAPH_CLIENT_ID": ("graphClientId", None),
        "GRAPH_NOTIFICATION_OPENID_URL": (
            "graphNotificationOpenIdUrl",
            "https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration",
        ),
    }
    for setting, (name, default) in expected.items():
        assert settings[setting] == name, setting
        assert param(MAIN, name).get("default") == default, name
    numeric = {
        "KEEPALIVE_CONCURRENCY": ("keepAliveConcurrency", 64),
        "KEEPALIVE_REQUEST_TIMEOUT": ("keepAliveRequestTimeout", 10),
        "KEEPALIVE_AT_RISK_MINUTES": ("keepAliveAtRiskMinutes", 30),
        "KEEPALIVE_FANOUT_THRESHOLD": ("keepAliveFanoutThreshold", 5000),
        "KEEPALIVE_TENANT_RATE": ("keepAliveTenantRate", 1000),
    }
    for setting, (name, default) in numeric.items():
        assert function_args(settings[setting], "string") == [name], setting
        assert param(MAIN, name)["type"] == "int" and param(MAIN, name)["default"] == default, name
    assert settings["GRAPH_DRY_RUN"]["operator"]["operands"] == {
        "condition": "graphDryRun",
        "true_value": "true",
        "false_value": "false",
    }
    assert param(MAIN, "graphDryRun")["default"] is False
    assert "tenant" in json.dumps(settings["GRAPH_TENANT_ID"])


# --- no secrets ------------------------------------------------------------------------------------------


def test_no_setting_or_output_holds_a_secret_or_storage_key():
    values = [s for vals in app_settings().values() for v in vals for s in walk(v)]
    for path in BICEP_FILES:
        values += [s for out in parse(path).get("outputs", {}).values() for s in walk(out)]
        text = path.read_text(encoding="utf-8").lower()
        for marker in SECRET_MARKERS:
            assert marker not in text, f"{path.name} contains {marker}"
    for value in values:
        lowered = value.lower()
        for marker in SECRET_MARKERS:
            assert marker not in lowered, value
    (secret,) = app_settings()["GRAPH_CLIENT_SECRET"]
    assert re.fullmatch(r"@Microsoft\.KeyVault\(VaultName=\$\{\w+\};SecretName=\$\{\w+\}\)", secret), secret


# The one secure input: the bot's webhook URL may carry a key in its query string (a Functions key, say),
# so it is @secure (kept out of the deployment history) and reaches nothing but the event subscription.
SECURE_PARAMETERS = {(MAIN, "callEventsWebhookUrl"), (EVENTS, "webhookUrl")}


def test_no_secret_passes_through_the_templates():
    # The operator writes the Graph client secret into Key Vault after deployment (docs/deploy.md), so no
    # template takes a secret, and no Key Vault secret resource is written by a deployment.
    secure = set()
    for path in BICEP_FILES:
        for name, definition in parse(path).get("parameters", {}).items():
            kinds = {d["type"] for d in definition["decorators"]}
            if "secure" in kinds:
                secure.add((path, name))
                assert definition["default"] == "", f"{path.name}: {name} has a default"
            assert not re.search(r"(secret|password|key)$", name, re.IGNORECASE) or name.endswith("Name"), name
        assert not resources_of_type(path, "Microsoft.KeyVault/vaults/secrets"), path
    assert secure == SECURE_PARAMETERS
    for path, name in SECURE_PARAMETERS:
        assert name not in json.dumps(parse(path).get("outputs", {})), f"{path.name}: {name} reaches an output"
    assert body(module_named("callEvents"))["params"]["webhookUrl"] == "callEventsWebhookUrl"
    (subscription,) = resources_of_type(EVENTS, "Microsoft.EventGrid/topics/eventSubscriptions").values()
    assert body(subscription)["properties"]["destination"]["properties"]["endpointUrl"] == "webhookUrl"
    assert EVENTS.read_text(encoding="utf-8").count("webhookUrl") == 3  # declared, withWebhook, endpointUrl


def test_outputs_are_upper_snake_and_hold_no_secret():
    for name in parse(MAIN)["outputs"]:
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), name
        if re.search(r"SECRET|PASSWORD|KEY", name) and name != "APPLICATIONINSIGHTS_CONNECTION_STRING":
            assert name.endswith("_NAME"), f"{name} looks like a secret"
    outputs = parse(MAIN)["outputs"]
    for expected in ("AZURE_LOCATION", "AZURE_TENANT_ID", "SERVICE_API_NAME", "AZURE_FUNCTION_APP_NAME"):
        assert expected in outputs, expected
    assert "applicationInsightsConnectionString" in json.dumps(outputs["APPLICATIONINSIGHTS_CONNECTION_STRING"])


# --- identity and roles ----------------------------------------------------------------------------------


def role_assignments() -> list[tuple[Path, str, dict[str, Any]]]:
    return [
        (path, name, res)
        for path in BICEP_FILES
        for name, res in resources_of_type(path, "Microsoft.Authorization/roleAssignments").items()
    ]


def role_of(path: Path, res: dict[str, Any]) -> str:
    (role_var,) = [
        v for v in function_args(body(res)["properties"]["roleDefinitionId"], "subscription_resource_id") if v
    ][1:]
    return ROLE_IDS[variable(path, role_var)]


def test_every_role_assignment_targets_the_identity_whose_job_it_is():
    assignments = role_assignments()
    assert {(path, name) for path, name, _ in assignments} == set(EXPECTED_ROLES)
    for path, name, res in assignments:
        role, principal, _, _ = EXPECTED_ROLES[(path, name)]
        props = body(res)["properties"]
        assert role_of(path, res) == role, name
        assert props["principalType"] == "ServicePrincipal", name
        if principal == "topic.identity.principalId":  # the topic's own system-assigned identity
            assert "topic" in json.dumps(props["principalId"]) and "principalId" in json.dumps(props["principalId"])
            assert body(resources_of_type(EVENTS, "Microsoft.EventGrid/topics")["topic"])["identity"] == {
                "type": "SystemAssigned"
            }
            continue
        assert props["principalId"] == principal, f"{name}: {role} goes to {props['principalId']}, not {principal}"
        assert principal in parse(path)["parameters"], f"{name}: principalId is not a parameter"
        _, module = module_for(path)
        passed = body(module)["params"].get(principal)
        assert passed is not None, f"{name}: main.bicep does not pass {principal}"
        identity_module = PRINCIPAL_SOURCES[principal]
        if identity_module is None:  # the bot: main.bicep's own parameter
            assert passed == principal and principal in parse(MAIN)["parameters"], name
        else:
            assert passed["operator"]["type"] == "property_accessor", name
            dumped = json.dumps(passed)
            assert f'"{identity_module}"' in dumped and '"principalId"' in dumped, name
        # name = guid(scope.id, principalId, roleId)
        args = function_args(body(res)["name"], "guid")
        assert args[1] == principal, name


def test_the_graph_identity_holds_no_storage_role_and_the_app_identity_cannot_call_graph():
    storage_roles = {r for r in ROLE_IDS.values() if r.startswith("Storage")}
    for path, name, res in role_assignments():
        if role_of(path, res) in storage_roles:
            assert body(res)["properties"]["principalId"] != "graphIdentityPrincipalId", name
    # The Graph credential (federated credential subject, Key Vault reference) is the Graph identity's.
    outputs = parse(MAIN)["outputs"]
    assert "graphUserAssignedIdentity" in json.dumps(outputs["GRAPH_FEDERATED_CREDENTIAL_SUBJECT"])
    assert "apiUserAssignedIdentity" not in json.dumps(outputs["GRAPH_FEDERATED_CREDENTIAL_SUBJECT"])
    for site_file in (SITE_FLEX, SITE_PREMIUM):
        (site,) = resources_of_type(site_file, "Microsoft.Web/sites").values()
        assert body(site)["properties"]["keyVaultReferenceIdentity"] == "graphIdentityId", site_file.name
        assert set(body(site)["identity"]["userAssignedIdentities"]) == {"'${identityId}'", "'${graphIdentityId}'"}
    params = body(module_named("api"))["params"]
    assert "graphUserAssignedIdentity" in json.dumps(params["graphIdentityClientId"])
    assert "apiUserAssignedIdentity" in json.dumps(params["identityClientId"])
    # storage, telemetry and any SDK default credential use the app's identity
    settings = app_settings()
    assert settings["AZURE_CLIENT_ID"] == ["identityClientId"]
    assert settings["AzureWebJobsStorage__clientId"] == ["identityClientId"]


SCOPE_TYPES = {
    "storageAccount": "Microsoft.Storage/storageAccounts",
    "applicationInsights": "Microsoft.Insights/components",
    "keyVault": "Microsoft.KeyVault/vaults",
    "cleanupQueue": "Microsoft.Storage/storageAccounts/queueServices/queues",
    "cleanupPoisonQueue": "Microsoft.Storage/storageAccounts/queueServices/queues",
    "topic": "Microsoft.EventGrid/topics",
    "deadLetterContainer": "Microsoft.Storage/storageAccounts/blobServices/containers",
}


def test_roles_are_exactly_the_needed_ones_at_the_narrowest_scope():
    for path, name, res in role_assignments():
        role, _, scope_name, expected_condition = EXPECTED_ROLES[(path, name)]
        config = body(res)
        assert config["scope"] == scope_name, f"{name}: {role} at {config['scope']}"
        scope = parse(path)["resources"][scope_name]
        assert scope["type"] == SCOPE_TYPES[scope_name], name
        assert condition(res) == expected_condition, name
    # Key Vault Secrets User only with the secret option
    keyvault_param = body(module_named("rbac"))["params"]["keyVaultName"]
    assert keyvault_param["operator"]["operands"]["condition"] == "useSecret"
    # the bot's queues: CLEANUP_QUEUE_NAME and its poison queue, created by the storage module
    rbac = parse(RBAC)["resources"]
    assert body(rbac["cleanupQueue"])["name"] == "cleanupQueueName" and rbac["cleanupQueue"]["existing"]
    assert (
        body(rbac["cleanupPoisonQueue"])["name"] == "cleanupPoisonQueueName" and rbac["cleanupPoisonQueue"]["existing"]
    )
    params = body(module_named("rbac"))["params"]
    assert params["botPrincipalId"] == "botPrincipalId" and param(MAIN, "botPrincipalId")["default"] == ""
    assert "cleanupPoisonQueueName" in json.dumps(params["cleanupPoisonQueueName"])
    assert "storage" in json.dumps(params["cleanupPoisonQueueName"])
    # the dead-letter role is on the container the subscription writes to, nothing wider
    container = body(parse(EVENTS)["resources"]["deadLetterContainer"])
    assert container["name"] == "deadLetterContainerName" and container["parent"] == "blobService"


# --- resources -------------------------------------------------------------------------------------------


def test_storage_account_is_locked_down():
    (account,) = resources_of_type(STORAGE, "Microsoft.Storage/storageAccounts").values()
    props = body(account)["properties"]
    assert props["allowSharedKeyAccess"] is False
    assert props["minimumTlsVersion"] == "TLS1_2"
    assert props["supportsHttpsTrafficOnly"] is True
    assert props["allowBlobPublicAccess"] is False
    for container in resources_of_type(STORAGE, "Microsoft.Storage/storageAccounts/blobServices/containers").values():
        assert body(container)["properties"]["publicAccess"] == "None"


def test_table_and_queues_exist_and_feed_the_app_settings():
    tables = resources_of_type(STORAGE, "Microsoft.Storage/storageAccounts/tableServices/tables")
    queues = resources_of_type(STORAGE, "Microsoft.Storage/storageAccounts/queueServices/queues")
    assert {body(t)["name"] for t in tables.values()} == {"callsTableName"}
    names = {body(q)["name"] for q in queues.values()}
    assert names == {"cleanupQueueName", "workQueueName", "callEventsQueueName", "poisonQueueName"}
    # every queue's poison queue exists from the start (the bot may hold only message roles there)
    assert variable(STORAGE, "poisonQueueNames") == [
        "${cleanupQueueName}-poison",
        "${workQueueName}-poison",
        "${callEventsQueueName}-poison",
    ]
    assert queues["poisonQueues"]["config"]["loop_type"]["detail"]["array_name"] == "poisonQueueNames"
    params = body(module_named("storage"))["params"]
    assert params["callsTableName"] == "callsTableName"
    assert params["cleanupQueueName"] == "cleanupQueueName"
    assert params["workQueueName"] == "keepAliveWorkQueueName"
    assert params["callEventsQueueName"] == "callEventsQueueName"
    settings = variable(MAIN, "contractAppSettings")
    assert settings["CALLS_TABLE_NAME"] == params["callsTableName"]
    assert settings["CLEANUP_QUEUE_NAME"] == params["cleanupQueueName"]
    assert settings["KEEPALIVE_WORK_QUEUE_NAME"] == params["workQueueName"]
    assert settings["CALL_EVENTS_QUEUE_NAME"] == params["callEventsQueueName"]
    assert param(MAIN, "callsTableName")["default"] == "activecalls"
    assert param(MAIN, "cleanupQueueName")["default"] == "call-cleanup"
    assert param(MAIN, "keepAliveWorkQueueName")["default"] == "keepalive-work"
    assert param(MAIN, "callEventsQueueName")["default"] == "call-events"
    # 56 characters at most: <name>-poison must still be a queue name (63)
    for path, name in ((MAIN, "cleanupQueueName"), (MAIN, "keepAliveWorkQueueName"), (MAIN, "callEventsQueueName")):
        limits = {d["type"]: d["argument"] for d in param(path, name)["decorators"]}
        assert limits["max_length"] + len("-poison") <= 63, name
    for name in ("cleanupQueueName", "workQueueName", "callEventsQueueName"):
        limits = {d["type"]: d["argument"] for d in param(STORAGE, name)["decorators"]}
        assert limits["max_length"] + len("-poison") <= 63, name


def test_plan_is_flex_consumption_by_default_and_elastic_premium_by_parameter():
    for path in (MAIN, PLAN, API):
        hosting = param(path, "hostingPlan")
        assert hosting["default"] == "FlexConsumption", path
        assert hosting["decorators"][-1]["argument"] == ["FlexConsumption", "ElasticPremium"], path
    (plan,) = resources_of_type(PLAN, "Microsoft.Web/serverfarms").values()
    config = body(plan)
    sku = config["sku"]["operator"]["operands"]
    assert sku["condition"] == "isFlex"
    assert sku["true_value"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert sku["false_value"]["tier"] == "ElasticPremium"
    assert config["properties"]["reserved"] is True
    assert body(module_named("appServicePlan"))["params"]["hostingPlan"] == "hostingPlan"
    assert body(module_named("api"))["params"]["hostingPlan"] == "hostingPlan"


def site_body(path: Path) -> dict[str, Any]:
    (site,) = resources_of_type(path, "Microsoft.Web/sites").values()
    return body(site)


def test_function_app_runs_python_311_on_flex_with_identity_deployment_storage():
    site = site_body(SITE_FLEX)
    assert site["kind"] == "functionapp,linux"
    assert site["identity"]["type"] == "UserAssigned"
    props = site["properties"]
    assert props["httpsOnly"] is True
    assert props["keyVaultReferenceIdentity"] == "graphIdentityId"
    assert props["siteConfig"] == {"minTlsVersion": "1.2", "appSettings": "appSettings"}
    flex = props["functionAppConfig"]
    storage = flex["deployment"]["storage"]
    assert storage["type"] == "blobContainer" and storage["value"] == "deploymentContainerUrl"
    passed = body(parse(API)["modules"]["flexSite"])["params"]
    assert (
        passed["deploymentContainerUrl"] == "${stg.properties.primaryEndpoints.blob}${deploymentStorageContainerName}"
    )
    for name in ("maximumInstanceCount", "instanceMemoryMB", "runtimeName", "runtimeVersion", "identityId"):
        assert passed[name] == name, name
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    assert flex["runtime"] == {"name": "runtimeName", "version": "runtimeVersion"}
    assert flex["scaleAndConcurrency"] == {
        "maximumInstanceCount": "maximumInstanceCount",
        "instanceMemoryMB": "instanceMemoryMB",
    }
    params = body(module_named("api"))["params"]
    assert params["runtimeName"] == "python"
    assert params["runtimeVersion"] == "pythonVersion" and variable(MAIN, "pythonVersion") == "3.11"
    assert params["identityId"]["operator"]["type"] == "property_accessor"
    for name in ("maximumInstanceCount", "instanceMemoryMB"):
        assert params[name] == name and param(MAIN, name)["type"] == "int", name
    # the platform's lowest maximum scale (1) is allowed
    for path in (MAIN, API, SITE_FLEX):
        (min_value,) = [
            d["argument"] for d in param(path, "maximumInstanceCount")["decorators"] if d["type"] == "min_value"
        ]
        assert min_value == 1, path.name


def test_each_plan_gets_its_own_site_module():
    modules = parse(API)["modules"]
    assert condition(modules["flexSite"]) == "isFlex"
    assert condition(modules["premiumSite"])["operator"]["type"] == "not"
    assert (API.parent / modules["flexSite"]["detail"]["path"]).resolve() == SITE_FLEX
    assert (API.parent / modules["premiumSite"]["detail"]["path"]).resolve() == SITE_PREMIUM


def test_premium_site_is_hardened_and_runs_python_311():
    props = site_body(SITE_PREMIUM)["properties"]
    assert props["httpsOnly"] is True and props["reserved"] is True
    config = props["siteConfig"]
    assert config["minTlsVersion"] == "1.2" and config["scmMinTlsVersion"] == "1.2"
    assert config["ftpsState"] == "Disabled"
    assert config["http20Enabled"] is True and config["remoteDebuggingEnabled"] is False
    assert config["linuxFxVersion"] == "linuxFxVersion"
    passed = body(parse(API)["modules"]["premiumSite"])["params"]["linuxFxVersion"]
    assert passed == "Python|${runtimeVersion}"


def test_basic_publishing_credentials_are_off():
    policies = resources_of_type(API, "Microsoft.Web/sites/basicPublishingCredentialsPolicies")
    assert {body(p)["name"]: body(p)["properties"] for p in policies.values()} == {
        "ftp": {"allow": False},
        "scm": {"allow": False},
    }
    for policy in policies.values():
        assert body(policy)["parent"] == "api"


def test_diagnostic_settings_send_app_storage_and_key_vault_logs_to_log_analytics():
    expected = {
        API: ({"api"}, {"FunctionAppLogs"}),
        STORAGE: ({"queueService", "tableService"}, {"StorageWrite", "StorageDelete"}),
        KEY_VAULT: ({"vault"}, {"audit"}),
    }
    for path, (scopes, categories) in expected.items():
        settings = resources_of_type(path, "Microsoft.Insights/diagnosticSettings")
        assert {body(s)["scope"] for s in settings.values()} == scopes, path.name
        for setting in settings.values():
            props = body(setting)["properties"]
            assert props["workspaceId"] == "logAnalyticsWorkspaceId", path.name
            logs = props["logs"]
            if isinstance(logs, str):
                logs = variable(path, logs)
            assert {log.get("category", log.get("categoryGroup")) for log in logs} == categories, path.name
            assert all(log["enabled"] is True for log in logs), path.name
    for module in ("storage", "keyVault", "api"):
        passed = body(module_named(module))["params"]["logAnalyticsWorkspaceId"]
        assert "logAnalyticsId" in json.dumps(passed), module


def test_zone_redundant_forces_zone_redundant_storage():
    mapping = variable(MAIN, "zoneRedundantStorageSku")
    allowed = param(MAIN, "storageSkuName")["decorators"][-1]["argument"]
    assert set(mapping) == set(allowed)
    assert all("ZRS" in sku for sku in mapping.values())
    effective = variable(MAIN, "effectiveStorageSkuName")["operator"]["operands"]
    assert effective["condition"] == "zoneRedundant" and effective["false_value"] == "storageSkuName"
    assert body(module_named("storage"))["params"]["skuName"] == "effectiveStorageSkuName"


def test_outputs_give_the_bot_the_queue_endpoint_the_queue_name_and_the_app_url():
    outputs = parse(MAIN)["outputs"]
    assert "queueEndpoint" in json.dumps(outputs["AZURE_STORAGE_QUEUE_ENDPOINT"])
    assert "cleanupQueueName" in json.dumps(outputs["CLEANUP_QUEUE_NAME"])
    assert "SERVICE_API_URI" in json.dumps(outputs["FUNCTION_APP_URL"])


def test_operations_alerts_action_group_and_workbook():
    module = body(module_named("operations"))["params"]
    assert module["alertEmailAddress"] == "alertEmailAddress" and param(MAIN, "alertEmailAddress")["default"] == ""
    groups = resources_of_type(OPERATIONS, "Microsoft.Insights/actionGroups")
    (group,) = groups.values()
    assert "alertEmailAddress" in json.dumps(body(group)["properties"]["emailReceivers"])
    rules = resources_of_type(OPERATIONS, "Microsoft.Insights/scheduledQueryRules")
    queries = {}
    for name, rule in rules.items():
        props = body(rule)["properties"]
        assert props["actions"] == "actions", name
        (criterion,) = props["criteria"]["allOf"]
        queries[name] = json.dumps(criterion["query"])
    assert len(rules) == 4
    for kql, rule in (
        ("at-risk.kql", "atRiskAlert"),
        ("tick-silence.kql", "silenceAlert"),
        ("failure-rate.kql", "failureRateAlert"),
    ):
        assert kql in queries[rule], rule
    assert queries["poisonAlert"] == '"poisonQuery"' and "poison-messages.kql" in json.dumps(
        variable(OPERATIONS, "poisonQuery")
    )
    (workbook,) = resources_of_type(OPERATIONS, "Microsoft.Insights/workbooks").values()
    # lower case (hashicorp/terraform-provider-azurerm#27755)
    assert function_args(body(workbook)["properties"]["sourceId"], "to_lower") == ["applicationInsightsId"]
    loaded = json.dumps(variable(OPERATIONS, "workbookQueries"))
    for kql in ("tick-summary.kql", "at-risk.kql", "throttling-by-tenant.kql", "ended-calls.kql"):
        assert kql in loaded, kql


def test_key_vault_uses_rbac_soft_delete_and_purge_protection():
    (vault,) = resources_of_type(KEY_VAULT, "Microsoft.KeyVault/vaults").values()
    props = body(vault)["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True
    assert props["enablePurgeProtection"] is True
    assert "accessPolicies" not in props
    assert condition(module_named("keyVault")) == "useSecret"


def test_application_insights_is_on_log_analytics_with_local_auth_off_where_the_cloud_offers_entra():
    (component,) = resources_of_type(MONITORING, "Microsoft.Insights/components").values()
    props = body(component)["properties"]
    assert props["DisableLocalAuth"] == "entraAuth"
    assert body(module_named("monitoring"))["params"]["entraAuth"] == "applicationInsightsEntraAuth"
    assert param(MAIN, "applicationInsightsAuth")["default"] == "auto"
    rule = json.dumps(variable(MAIN, "applicationInsightsEntraAuth"))
    assert "AzureCloud" in rule and '"entra"' in rule and '"auto"' in rule
    assert "logAnalytics" in json.dumps(props["WorkspaceResourceId"])
    assert resources_of_type(MONITORING, "Microsoft.OperationalInsights/workspaces")


# --- parameters file and azure.yaml ----------------------------------------------------------------------


def test_parameters_file_matches_main_and_uses_only_azd_substitutions():
    document = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    declared = parse(MAIN)["parameters"]
    given = document["parameters"]
    for name, entry in given.items():
        assert name in declared, f"main.parameters.json sets {name}, which main.bicep does not declare"
        assert set(entry) == {"value"}, name
        assert re.fullmatch(r"\$\{[A-Z][A-Z0-9_]*(=[^}]*)?\}", entry["value"]), f"{name}: {entry['value']}"
        assert not re.search(r"secret|password|key", name, re.IGNORECASE), name
    required = {name for name, definition in declared.items() if "default" not in definition}
    assert required <= set(given), f"required parameters missing: {sorted(required - set(given))}"
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert given["location"]["value"] == "${AZURE_LOCATION}"


def test_azure_yaml_declares_the_python_function_service():
    text = (ROOT / "azure.yaml").read_text(encoding="utf-8")
    lines = [line.split("#", 1)[0].rstrip() for line in text.splitlines()]
    services = lines.index("services:")
    block = "\n".join(lines[services:])
    assert re.search(r"^  api:$", block, re.MULTILINE)
    for key, value in (("project", "."), ("language", "python"), ("host", "function")):
        assert re.search(rf"^    {key}: {re.escape(value)}$", block, re.MULTILINE), key
