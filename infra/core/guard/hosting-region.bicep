targetScope = 'subscription'

// Refuses, at deployment and before anything is created (the resource group takes its location from
// here), Flex Consumption in a region that does not offer it. main.bicep's `location` allows the union of
// these regions and the US government regions that the Elastic Premium path exists for, so that one
// parameter serves both plans; this guard holds Flex Consumption to its own list.
//
// fail() is Bicep's flow-control function (Bicep 0.33 and later, Azure/bicep#15958;
// https://learn.microsoft.com/azure/azure-resource-manager/bicep/bicep-functions-flow-control): evaluated
// in the short-circuiting ?: below, it stops the deployment with the message. checkov's pinned Bicep parser
// (pycep-parser 0.5.1) predates fail(), so scripts/check_infra.py leaves this file out; it has no resource
// for checkov to check (tests/infra/test_tooling.py holds both).
param location string

@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string

// The Flex Consumption regions: the @allowed list of Microsoft's Flex Consumption quickstart,
// Azure-Samples/functions-quickstart-python-http-azd infra/main.bicep at 947c194f (2025-05-07).
// `az functionapp list-flexconsumption-locations` gives today's list; main.bicep's `location` repeats it
// (tests/infra/test_templates.py keeps the two equal).
var flexConsumptionRegions = [
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'eastus2euap'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
]

var offered = hostingPlan != 'FlexConsumption' || contains(flexConsumptionRegions, location)

output location string = offered ? location : fail('Flex Consumption is not offered in ${location}. Pick a Flex Consumption region (az functionapp list-flexconsumption-locations), or deploy Elastic Premium there: azd env set AZURE_FUNCTIONS_HOSTING_PLAN ElasticPremium (docs/deploy.md, "National clouds").')
