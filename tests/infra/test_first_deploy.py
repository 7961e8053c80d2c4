"""What a first `azd up` in a fresh subscription trips on (issue 20), each held against its published source:
alert rules on tables that are still empty, diagnostic settings on Flex Consumption, regions, scaling words,
and the documents that describe the parameters.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.test_templates import (
    API,
    GUARD,
    INFRA,
    MAIN,
    OPERATIONS,
    ROOT,
    SITE_FLEX,
    body,
    condition,
    function_args,
    module_named,
    param,
    parse,
    resources_of_type,
    variable,
)

QUERIES = INFRA / "queries"

# Every log alert rule, the query it loads and the table that query reads, which is empty on the first run:
# `traces` of an Application Insights component created in the same deployment (no telemetry yet), and
# `StorageQueueLogs` of a workspace created in the same deployment (the table appears with the first
# queue write). So every rule skips the validation at creation (Azure/bicep#11378, mspnp/aks-baseline#422).
RULE_TABLES = {
    "atRiskAlert": ("at-risk.kql", "traces", "applicationInsightsId"),
    "silenceAlert": ("tick-silence.kql", "traces", "applicationInsightsId"),
    "failureRateAlert": ("failure-rate.kql", "traces", "applicationInsightsId"),
    "poisonAlert": ("poison-messages.kql", "StorageQueueLogs", "logAnalyticsWorkspaceId"),
}

# The US government regions of the Elastic Premium path (Learn, Azure.Core.AzureLocation).
US_GOVERNMENT_REGIONS = ["usgovvirginia", "usgovtexas", "usgovarizona", "usdodeast", "usdodcentral"]


def first_table(kql_file: str) -> str:
    lines = [line for line in (QUERIES / kql_file).read_text(encoding="utf-8").splitlines() if line.strip()]
    return next(line for line in lines if not line.startswith("//")).strip()


# --- alerts on tables that do not exist yet ------------------------------------------------------------


def test_every_alert_rule_whose_table_is_empty_on_the_first_run_skips_query_validation():
    rules = resources_of_type(OPERATIONS, "Microsoft.Insights/scheduledQueryRules")
    assert set(rules) == set(RULE_TABLES), "a new rule: say which table it reads and whether it may be empty"
    assert variable(OPERATIONS, "skipQueryValidation") is True
    for name, rule in rules.items():
        kql, table, scope = RULE_TABLES[name]
        props = body(rule)["properties"]
        assert props["skipQueryValidation"] == "skipQueryValidation", name
        assert props["scopes"] == [scope], name
        assert first_table(kql) == table, name
    text = OPERATIONS.read_text(encoding="utf-8")
    assert "Azure/bicep#11378" in text and "mspnp/aks-baseline/pull/422" in text


# --- diagnostic settings on Flex Consumption -------------------------------------------------------------


def test_function_app_logs_on_flex_consumption_are_opt_in_and_on_with_elastic_premium():
    (setting,) = resources_of_type(API, "Microsoft.Insights/diagnosticSettings").values()
    rule = condition(setting)
    assert rule["operator"]["type"] == "or"
    operands = json.dumps(rule)
    assert '"isFlex"' in operands and '"flexFunctionAppLogs"' in operands and '"not"' in operands
    for path in (MAIN, API):
        assert param(path, "flexFunctionAppLogs")["default"] is False, path.name
    assert body(module_named("api"))["params"]["flexFunctionAppLogs"] == "flexFunctionAppLogs"
    given = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert given["flexFunctionAppLogs"]["value"] == "${FLEX_FUNCTION_APP_LOGS=false}"
    text = API.read_text(encoding="utf-8")
    assert "Azure/azure-functions-host#11434" in text and "flex-consumption-plan.md" in text


# --- regions ---------------------------------------------------------------------------------------------


def allowed(path, name) -> list[str]:
    (values,) = [d["argument"] for d in param(path, name)["decorators"] if d["type"] == "allowed"]
    return values


def flex_regions() -> list[str]:
    return variable(GUARD, "flexConsumptionRegions")


def test_location_allows_the_flex_consumption_regions_and_the_us_government_regions_with_azd_metadata():
    assert allowed(MAIN, "location") == flex_regions() + US_GOVERNMENT_REGIONS
    assert len(flex_regions()) == len(set(flex_regions())) == 32
    (metadata,) = [d["argument"] for d in param(MAIN, "location")["decorators"] if d["type"] == "metadata"]
    assert metadata == {"azd": {"type": "location"}}
    text = MAIN.read_text(encoding="utf-8") + GUARD.read_text(encoding="utf-8")
    assert "Azure-Samples/functions-quickstart-python-http-azd" in text and "947c194f (2025-05-07)" in text
    assert "Azure.Core.AzureLocation" in text


def test_flex_consumption_is_refused_at_deployment_in_a_region_that_does_not_offer_it():
    # the resource group (created first) takes its location from the guard, which fails for Flex elsewhere
    (rg,) = resources_of_type(MAIN, "Microsoft.Resources/resourceGroups").values()
    assert "hostingRegion" in json.dumps(body(rg)["location"]) and "location" in json.dumps(body(rg)["location"])
    assert body(module_named("hostingRegion"))["params"] == {"location": "location", "hostingPlan": "hostingPlan"}
    assert parse(GUARD)["globals"]["scope"]["value"] == "subscription"
    output = parse(GUARD)["outputs"]["location"]["value"]["operator"]["operands"]
    assert output["condition"] == "offered" and output["true_value"] == "location"
    (message,) = function_args(output["false_value"], "fail")
    assert message.startswith("Flex Consumption is not offered in ${location}.")
    assert "AZURE_FUNCTIONS_HOSTING_PLAN ElasticPremium" in message
    source = GUARD.read_text(encoding="utf-8")
    rule = "var offered = hostingPlan != 'FlexConsumption' || contains(flexConsumptionRegions, location)"
    assert rule in source  # pycep-parser reads `!=` and `||` with the wrong precedence: checked as text
    assert "bicep-functions-flow-control" in source and "Azure/bicep#15958" in source


@pytest.mark.parametrize("region", ["eastus", "swedencentral", *US_GOVERNMENT_REGIONS])
@pytest.mark.parametrize("plan", ["FlexConsumption", "ElasticPremium"])
def test_the_guard_lets_through_exactly_flex_in_its_regions_and_premium_anywhere(region: str, plan: str):
    offered = plan != "FlexConsumption" or region in flex_regions()  # the guard's rule, on its own list
    assert offered == (plan == "ElasticPremium" or region not in US_GOVERNMENT_REGIONS)
    assert region in allowed(MAIN, "location")


# --- scaling words that match Azure ----------------------------------------------------------------------


def test_maximum_instance_count_is_described_per_function_scale_group():
    for path in (MAIN, API, SITE_FLEX):
        (text,) = [
            d["argument"] for d in param(path, "maximumInstanceCount")["decorators"] if d["type"] == "description"
        ]
        assert "per-function scale group" in text and "not of the app as a whole" in text, path.name
        limits = {d["type"]: d["argument"] for d in param(path, "maximumInstanceCount")["decorators"]}
        assert (limits["min_value"], limits["max_value"]) == (1, 1000), path.name
    scaling = (ROOT / "docs" / "scaling.md").read_text(encoding="utf-8")
    assert "40–1000" not in scaling and "40-1000" not in scaling
    assert re.search(r"`maximumInstanceCount` 1–1,000 per function scale group", scaling)
    assert "event-driven-scaling" in scaling


# --- drift: the deploy doc's parameter list is main.bicep's ---------------------------------------------


def documented_parameters() -> set[str]:
    """Every parameter name (camelCase) in the "Bicep parameter" column of the tables of docs/deploy.md, step 2."""
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = text.split("## 2. Provision and deploy with `azd up`", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for table in re.findall(r"(?:^\|.*\|\n)+", section, flags=re.MULTILINE):
        rows = [[cell.strip() for cell in row.strip().strip("|").split("|")] for row in table.splitlines()]
        if "Bicep parameter" not in rows[0]:
            continue
        column = rows[0].index("Bicep parameter")
        for row in rows[2:]:
            names |= set(re.findall(r"`([a-z][A-Za-z0-9]*)`", row[column]))
    return names


def test_the_deploy_doc_lists_every_parameter_of_main_bicep_and_no_other():
    declared = set(parse(MAIN)["parameters"])
    documented = documented_parameters()
    assert documented, "docs/deploy.md has no parameter table"
    assert declared - documented == set(), f"undocumented: {sorted(declared - documented)}"
    assert documented - declared == set(), f"documented but not declared: {sorted(documented - declared)}"
    text = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "keepAliveMaxRequestsPerSecond" not in text and "keepAliveTenantRate" in text


# --- the Premium path's exit code, for CI ----------------------------------------------------------------


def test_the_readme_says_how_ci_treats_the_premium_stop():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    deploying = readme.split("**Deploying.**", 1)[1].split("\n\n", 1)[0]
    assert "exit 3" in deploying and "CALLKEEPER_DEPLOY_ONLY=1" in deploying and "CI" in deploying
