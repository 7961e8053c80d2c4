// Hosting plan of the function app: Flex Consumption (FC1) by default; Elastic Premium (EP1-EP3) where Flex
// Consumption is not offered (the US government clouds). Both are Linux plans.
param name string
param location string = resourceGroup().location
param tags object = {}

@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param elasticPremiumSku string = 'EP1'

@description('Elastic Premium only: most instances the plan scales out to.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 20

@description('Zone redundancy, where the region offers it (Elastic Premium then runs at least 3 instances).')
param zoneRedundant bool = false

var isFlex = hostingPlan == 'FlexConsumption'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy is opt-in through the zoneRedundant parameter; not every region offers it for Flex Consumption
  name: name
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: elasticPremiumSku
    tier: 'ElasticPremium'
    capacity: zoneRedundant ? 3 : 1
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
    maximumElasticWorkerCount: isFlex ? null : maximumElasticWorkerCount
  }
}

output id string = plan.id
output name string = plan.name
