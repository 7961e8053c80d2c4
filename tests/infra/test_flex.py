"""The Flex Consumption site sets nothing that Flex Consumption refuses or deprecates.

Azure refuses some site properties on Flex Consumption with ARM error 51021 ("The following site
configuration property (Site.SiteConfig.X) for Flex Consumption sites is invalid"), and enforcement is
rolling out region by region, so a template that deployed once can fail elsewhere. The lists below are
held against everything the Flex branch of the templates can set: the Flex site module and the app
settings app/api.bicep gives it.
"""

from __future__ import annotations

from typing import Any

from tests.infra.test_templates import API, SITE_FLEX, app_settings, body, resources_of_type, variable

# Source: Learn, "App settings reference for Azure Functions", section "Flex Consumption plan
# deprecations" (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations),
# read from MicrosoftDocs/azure-docs articles/azure-functions/functions-app-settings.md. The table's
# `properties.X` rows, as site or siteConfig property names (compared without case).
FLEX_UNSUPPORTED_PROPERTIES = {
    "alwaysOn",
    "containerSize",
    "dnsConfiguration",
    "ftpsState",
    "isReserved",
    "reserved",  # the JSON name of `isReserved`
    "IsXenon",
    "javaVersion",
    "LinuxFxVersion",
    "netFrameworkVersion",
    "powerShellVersion",
    "functionAppScaleLimit",
    "preWarmedInstanceCount",
    "use32BitWorkerProcess",
    "vnetBackupRestoreEnabled",
    "vnetContentShareEnabled",
    "vnetImagePullEnabled",
    "vnetRouteAllEnabled",
    "windowsFxVersion",
}
# Refused with ARM 51021 as reported in the field (besides the Learn table): FtpsState (Azure/azure-cli#31414),
# LinuxFxVersion (Azure/terraform-azurerm-avm-res-web-site#283), FunctionAppScaleLimit
# (Azure/azure-functions-host#10643), Use32BitWorkerProcess, NetFrameworkVersion and
# FunctionsRuntimeScaleMonitoringEnabled (microsoft/azure-pipelines-tasks#21032); the AVM module's fix
# (Azure/terraform-azurerm-avm-res-web-site#345) also suppresses the scaling and worker properties below;
# minimumElasticInstanceCount is contested there (#353) and left unset here all the same.
FLEX_REFUSED_IN_THE_FIELD = {
    "functionsRuntimeScaleMonitoringEnabled",
    "minimumElasticInstanceCount",
    "numberOfWorkers",
    "elasticWebAppScaleLimit",
}
# The same Learn table's app settings.
FLEX_UNSUPPORTED_APP_SETTINGS = {
    "ENABLE_ORYX_BUILD",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY",
    "FUNCTIONS_WORKER_PROCESS_COUNT",
    "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL",
}
# What Microsoft's Flex quickstarts (Azure-Samples functions-quickstart-python-http-azd) set in siteConfig.
FLEX_SITE_CONFIG = {"minTlsVersion", "appSettings"}


def keys(value: Any) -> set[str]:
    """Every object key inside a parsed value, quotes stripped, lower case."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(key.strip("'").lower())
            found |= keys(item)
    elif isinstance(value, list):
        for item in value:
            found |= keys(item)
    return found


def flex_site() -> dict[str, Any]:
    (site,) = resources_of_type(SITE_FLEX, "Microsoft.Web/sites").values()
    return body(site)


def test_the_flex_site_sets_no_unsupported_or_refused_property():
    refused = {name.lower() for name in FLEX_UNSUPPORTED_PROPERTIES | FLEX_REFUSED_IN_THE_FIELD}
    site = flex_site()
    found = keys(site["properties"]) & refused
    assert not found, f"the Flex site sets {sorted(found)}, which Flex Consumption refuses or deprecates"
    assert set(site["properties"]["siteConfig"]) == FLEX_SITE_CONFIG


def test_the_flex_branch_sets_no_deprecated_app_setting():
    # Every app setting the templates can set outside the Premium-only object...
    premium_only = set(variable(API, "premiumSettings")["operator"]["operands"]["false_value"])
    flex_settings = set(app_settings()) - premium_only
    found = flex_settings & FLEX_UNSUPPORTED_APP_SETTINGS
    assert not found, f"Flex Consumption deprecates {sorted(found)}"
    # ...and that object is empty on Flex.
    operands = variable(API, "premiumSettings")["operator"]["operands"]
    assert operands["condition"] == "isFlex" and operands["true_value"] == {}


def test_the_check_catches_a_refused_property():
    site = flex_site()
    broken = {**site["properties"], "siteConfig": {**site["properties"]["siteConfig"], "ftpsState": "Disabled"}}
    refused = {name.lower() for name in FLEX_UNSUPPORTED_PROPERTIES}
    assert keys(broken) & refused == {"ftpsstate"}
