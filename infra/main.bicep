targetScope = 'subscription'

// callkeeper on Azure Functions: a Linux Python 3.11 function app (Flex Consumption by default) with two
// user-assigned managed identities (the app's: storage and telemetry; the Graph identity: the Graph
// credential only), identity-only storage, Application Insights (Entra-only ingestion where the cloud offers
// it), a Graph credential that is either secretless (federated credential) or a Key Vault reference, logs of
// the app, storage and Key Vault in Log Analytics, and alerts and a workbook for the operators.

@minLength(1)
@maxLength(64)
@description('Name of the environment, used to generate a short unique hash for all resources.')
param environmentName string

// One location serves both plans, so it allows the union of two lists, each with its source (checked
// 2026-08, as the rest of this file):
// - the Flex Consumption regions: the @allowed list of Microsoft's Flex Consumption quickstart,
//   Azure-Samples/functions-quickstart-python-http-azd infra/main.bicep at 947c194f (2025-05-07), which
//   core/guard/hosting-region.bicep repeats and enforces for FlexConsumption at deployment;
// - the US government regions that the Elastic Premium path exists for (Azure Government and DoD), by
//   their programmatic names (Learn, Azure.Core.AzureLocation: USGovVirginia, USGovTexas, USGovArizona,
//   USDoDEast, USDoDCentral).
// The azd metadata makes `azd up` offer these locations (as the quickstart does).
@minLength(1)
@description('Primary location for all resources. Flex Consumption runs only in its regions (the first list; `az functionapp list-flexconsumption-locations`); the US government regions take Elastic Premium (docs/deploy.md).')
@allowed([
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
  'usgovvirginia'
  'usgovtexas'
  'usgovarizona'
  'usdodeast'
  'usdodcentral'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('FlexConsumption (FC1, default) or ElasticPremium (US government clouds, where Flex Consumption is not offered).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Elastic Premium only: plan size.')
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param elasticPremiumSku string = 'EP1'

@description('Flex Consumption: most on-demand instances of each per-function scale group (all HTTP functions together, each other function on its own), not of the app as a whole; 1 to 1,000 (Learn, event-driven scaling).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Flex Consumption: memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Zone-redundant plan, where the region offers it. Forces zone-redundant storage (LRS to ZRS, GRS to GZRS, RAGRS to RAGZRS): a plan with availability zones supports only zone-redundant storage.')
param zoneRedundant bool = false

@description('Storage redundancy (made zone-redundant when zoneRedundant is true).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('GRAPH_CLIENT_ID: application (client) id of the bot\'s app registration.')
@minLength(1)
param graphClientId string

@description('GRAPH_TENANT_ID: tenant used for a call registered without tenantId; empty means this subscription\'s tenant.')
param graphTenantId string = ''

@description('managedIdentity (secretless, default): GRAPH_MANAGED_IDENTITY_CLIENT_ID through a federated credential. secret: GRAPH_CLIENT_SECRET as a Key Vault reference; the operator writes the secret after deployment.')
@allowed([
  'managedIdentity'
  'secret'
])
param graphCredential string = 'managedIdentity'

@description('Name of the Key Vault secret that holds the Graph client secret (secret option).')
param graphClientSecretName string = 'graph-client-secret'

@description('GRAPH_CLOUD: global, usgov or usgovdod.')
@allowed([
  'global'
  'usgov'
  'usgovdod'
])
param graphCloud string = 'global'

@description('GRAPH_BASE_URL override; empty (default) derives it from GRAPH_CLOUD.')
param graphBaseUrl string = ''

@description('GRAPH_AUTHORITY_HOST override; empty (default) derives it from GRAPH_CLOUD.')
param graphAuthorityHost string = ''

@description('GRAPH_DRY_RUN: report what the tick would send and change nothing.')
param graphDryRun bool = false

@description('GRAPH_NOTIFICATION_OPENID_URL: where the signing keys of Graph\'s notification tokens are found.')
param graphNotificationOpenIdUrl string = 'https://api.aps.skype.com/v1/.well-known/OpenIdConfiguration'

@description('CALLS_TABLE_NAME: table of active calls.')
@minLength(3)
@maxLength(63)
param callsTableName string = 'activecalls'

@description('CLEANUP_QUEUE_NAME: queue that receives callEnded events; 56 characters at most, so that <name>-poison is a queue name.')
@minLength(3)
@maxLength(56)
param cleanupQueueName string = 'call-cleanup'

@description('KEEPALIVE_WORK_QUEUE_NAME: queue of fan-out work messages; 56 characters at most, so that <name>-poison is a queue name.')
@minLength(3)
@maxLength(56)
param keepAliveWorkQueueName string = 'keepalive-work'

@description('CALL_EVENTS_QUEUE_NAME: internal queue through which callEnded events reach the Event Grid topic; 56 characters at most, so that <name>-poison is a queue name.')
@minLength(3)
@maxLength(56)
param callEventsQueueName string = 'call-events'

@description('KEEPALIVE_SCHEDULE: NCRONTAB of the keep-alive timer.')
param keepAliveSchedule string = '0 */10 * * * *'

@description('KEEPALIVE_CONCURRENCY: most keepAlive requests in flight at once.')
@minValue(1)
@maxValue(256)
param keepAliveConcurrency int = 64

@description('KEEPALIVE_REQUEST_TIMEOUT: seconds per Graph request.')
@minValue(1)
@maxValue(300)
param keepAliveRequestTimeout int = 10

@description('KEEPALIVE_AT_RISK_MINUTES: warn about calls whose last success is older than this.')
@minValue(1)
@maxValue(44)
param keepAliveAtRiskMinutes int = 30

@description('KEEPALIVE_FANOUT_THRESHOLD: above this many calls the timer fans out to work messages.')
@minValue(1)
param keepAliveFanoutThreshold int = 5000

@description('KEEPALIVE_TENANT_RATE: the most keepAlive requests per second the whole fleet sends to one tenant (Graph allows 3,333/s per app and tenant for everything).')
@minValue(1)
@maxValue(3000)
param keepAliveTenantRate int = 1000

@description('auto (default): Entra-only ingestion (local auth off) in the commercial cloud (AzureCloud), the instrumentation key elsewhere, where Learn does not offer Entra ingestion; entra or key forces one.')
@allowed([
  'auto'
  'entra'
  'key'
])
param applicationInsightsAuth string = 'auto'

@description('E-mail address for the alerts; empty creates the action group without a receiver.')
param alertEmailAddress string = ''

@description('Object id of the bot\'s identity (managed identity or service principal); it gets what a queue trigger needs on the cleanup queue and on its poison queue, nothing else (app/rbac.bicep). Empty for none.')
param botPrincipalId string = ''

@description('Flex Consumption: also send FunctionAppLogs to Log Analytics with a diagnostic setting (off: Learn listed diagnostic settings as unsupported on Flex Consumption; app/api.bicep). Elastic Premium always does.')
param flexFunctionAppLogs bool = false

@description('Create the Event Grid topic that publishes callEnded events as CloudEvents 1.0 (CALL_EVENTS_TOPIC_ENDPOINT). Off by default: Event Grid bills every operation, even with no subscriber. A webhook URL turns it on.')
param enableCallEventsTopic bool = false

@secure()
@description('Optional: the bot\'s HTTPS webhook; creates an event subscription with CloudEvents delivery, retries and dead-lettering. The bot must be running and answer Event Grid\'s validation handshake when this deploys (docs/deploy.md).')
param callEventsWebhookUrl string = ''

// Optional name overrides; empty means the generated name.
param resourceGroupName string = ''
param apiServiceName string = ''
param apiUserAssignedIdentityName string = ''
param graphUserAssignedIdentityName string = ''
param actionGroupName string = ''
param appServicePlanName string = ''
param storageAccountName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''
param keyVaultName string = ''
param callEventsTopicName string = ''

var abbrs = loadJsonContent('./abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var pythonVersion = '3.11'
var useSecret = graphCredential == 'secret'
var functionAppName = !empty(apiServiceName) ? apiServiceName : '${abbrs.webSitesFunctions}api-${resourceToken}'
var deploymentStorageContainerName = 'app-package-${take(functionAppName, 32)}-${take(toLower(uniqueString(functionAppName, resourceToken)), 7)}'
var vaultName = !empty(keyVaultName) ? keyVaultName : '${abbrs.keyVaultVaults}${resourceToken}'
var applicationInsightsEntraAuth = applicationInsightsAuth == 'entra' || (applicationInsightsAuth == 'auto' && environment().name == 'AzureCloud')
var callEventsTopicOn = enableCallEventsTopic || !empty(callEventsWebhookUrl)

// A plan with availability zones supports only zone-redundant storage.
var zoneRedundantStorageSku = {
  Standard_LRS: 'Standard_ZRS'
  Standard_ZRS: 'Standard_ZRS'
  Standard_GRS: 'Standard_GZRS'
  Standard_GZRS: 'Standard_GZRS'
  Standard_RAGRS: 'Standard_RAGZRS'
  Standard_RAGZRS: 'Standard_RAGZRS'
}
var effectiveStorageSkuName = zoneRedundant ? zoneRedundantStorageSku[storageSkuName] : storageSkuName

// Blob: host state, timer leases and the deployment package. Queue: the app's queues and the host's poison
// queues. Table: the calls table.
var storageEndpointConfig = {
  enableBlob: true
  enableQueue: true
  enableTable: true
}

// The contract's settings, by the same names (identity, storage, monitoring and credential settings are
// added in app/api.bicep).
var contractAppSettings = {
  CALLS_TABLE_NAME: callsTableName
  CLEANUP_QUEUE_NAME: cleanupQueueName
  KEEPALIVE_SCHEDULE: keepAliveSchedule
  KEEPALIVE_CONCURRENCY: string(keepAliveConcurrency)
  KEEPALIVE_REQUEST_TIMEOUT: string(keepAliveRequestTimeout)
  KEEPALIVE_AT_RISK_MINUTES: string(keepAliveAtRiskMinutes)
  KEEPALIVE_FANOUT_THRESHOLD: string(keepAliveFanoutThreshold)
  KEEPALIVE_WORK_QUEUE_NAME: keepAliveWorkQueueName
  CALL_EVENTS_QUEUE_NAME: callEventsQueueName
  // Empty (unset) unless the optional Event Grid topic is deployed: then callEnded events are published there.
  CALL_EVENTS_TOPIC_ENDPOINT: callEventsTopicOn ? callEvents.outputs.endpoint : ''
  KEEPALIVE_TENANT_RATE: string(keepAliveTenantRate)
  GRAPH_TENANT_ID: empty(graphTenantId) ? tenant().tenantId : graphTenantId
  GRAPH_CLIENT_ID: graphClientId
  GRAPH_CLOUD: graphCloud
  GRAPH_DRY_RUN: graphDryRun ? 'true' : 'false'
  GRAPH_NOTIFICATION_OPENID_URL: graphNotificationOpenIdUrl
}
var graphBaseUrlSettings = empty(graphBaseUrl) ? {} : { GRAPH_BASE_URL: graphBaseUrl }
var graphAuthorityHostSettings = empty(graphAuthorityHost) ? {} : { GRAPH_AUTHORITY_HOST: graphAuthorityHost }

// Federated credential of the bot's app registration (secretless option): the identity's token is the
// client assertion. The audience differs in the US government clouds.
var isGlobalCloud = graphCloud == 'global'
var federatedCredentialAudience = isGlobalCloud ? 'api://AzureADTokenExchange' : 'api://AzureADTokenExchangeUSGov'

// Stops the deployment before anything is created when Flex Consumption is asked for in a region that
// does not offer it (core/guard/hosting-region.bicep).
module hostingRegion './core/guard/hosting-region.bicep' = {
  name: 'hostingRegion'
  params: {
    location: location
    hostingPlan: hostingPlan
  }
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: hostingRegion.outputs.location
  tags: tags
}

module apiUserAssignedIdentity './core/identity/user-assigned-identity.bicep' = {
  name: 'apiUserAssignedIdentity'
  scope: rg
  params: {
    name: !empty(apiUserAssignedIdentityName) ? apiUserAssignedIdentityName : '${abbrs.managedIdentityUserAssignedIdentities}api-${resourceToken}'
    location: location
    tags: tags
  }
}

// The Graph identity: the subject of the bot registration's federated credential (or the reader of the
// Key Vault secret). It holds no storage role; the app's identity above is trusted by no app registration.
module graphUserAssignedIdentity './core/identity/user-assigned-identity.bicep' = {
  name: 'graphUserAssignedIdentity'
  scope: rg
  params: {
    name: !empty(graphUserAssignedIdentityName) ? graphUserAssignedIdentityName : '${abbrs.managedIdentityUserAssignedIdentities}graph-${resourceToken}'
    location: location
    tags: tags
  }
}

module appServicePlan './core/host/functions-plan.bicep' = {
  name: 'appServicePlan'
  scope: rg
  params: {
    name: !empty(appServicePlanName) ? appServicePlanName : '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    hostingPlan: hostingPlan
    elasticPremiumSku: elasticPremiumSku
    zoneRedundant: zoneRedundant
  }
}

module storage './core/storage/storage-account.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: !empty(storageAccountName) ? storageAccountName : '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: effectiveStorageSkuName
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    deploymentContainerName: deploymentStorageContainerName
    callsTableName: callsTableName
    cleanupQueueName: cleanupQueueName
    workQueueName: keepAliveWorkQueueName
    callEventsQueueName: callEventsQueueName
  }
}

module monitoring './core/monitor/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: !empty(applicationInsightsName) ? applicationInsightsName : '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    entraAuth: applicationInsightsEntraAuth
  }
}

module operations './core/monitor/operations.bicep' = {
  name: 'operations'
  scope: rg
  params: {
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    actionGroupName: !empty(actionGroupName) ? actionGroupName : '${abbrs.insightsActionGroups}${resourceToken}'
    alertEmailAddress: alertEmailAddress
    cleanupQueueName: storage.outputs.cleanupQueueName
    workQueueName: storage.outputs.workQueueName
    callEventsQueueName: storage.outputs.callEventsQueueName
  }
}

module keyVault './core/security/keyvault.bicep' = if (useSecret) {
  name: 'keyVault'
  scope: rg
  params: {
    name: vaultName
    location: location
    tags: tags
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

module rbac './app/rbac.bicep' = {
  name: 'rbacAssignments'
  scope: rg
  dependsOn: [
    keyVault
  ]
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    managedIdentityPrincipalId: apiUserAssignedIdentity.outputs.principalId
    graphIdentityPrincipalId: graphUserAssignedIdentity.outputs.principalId
    applicationInsightsEntraAuth: applicationInsightsEntraAuth
    cleanupQueueName: storage.outputs.cleanupQueueName
    cleanupPoisonQueueName: storage.outputs.cleanupPoisonQueueName
    botPrincipalId: botPrincipalId
    enableBlob: storageEndpointConfig.enableBlob
    enableQueue: storageEndpointConfig.enableQueue
    enableTable: storageEndpointConfig.enableTable
    keyVaultName: useSecret ? vaultName : ''
  }
}

// The optional Event Grid topic (off by default) and, with a webhook URL, its subscription.
module callEvents './core/events/event-grid.bicep' = if (callEventsTopicOn) {
  name: 'callEvents'
  scope: rg
  params: {
    name: !empty(callEventsTopicName) ? callEventsTopicName : '${abbrs.eventGridDomainsTopics}${resourceToken}'
    location: location
    tags: tags
    publisherPrincipalId: apiUserAssignedIdentity.outputs.principalId
    webhookUrl: callEventsWebhookUrl
    storageAccountName: storage.outputs.name
  }
}

module api './app/api.bicep' = {
  name: 'api'
  scope: rg
  dependsOn: [
    rbac
  ]
  params: {
    name: functionAppName
    location: location
    tags: tags
    serviceName: 'api'
    appServicePlanId: appServicePlan.outputs.id
    hostingPlan: hostingPlan
    runtimeName: 'python'
    runtimeVersion: pythonVersion
    storageAccountName: storage.outputs.name
    deploymentStorageContainerName: deploymentStorageContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    identityId: apiUserAssignedIdentity.outputs.id
    identityClientId: apiUserAssignedIdentity.outputs.clientId
    graphIdentityId: graphUserAssignedIdentity.outputs.id
    graphIdentityClientId: graphUserAssignedIdentity.outputs.clientId
    applicationInsightsEntraAuth: applicationInsightsEntraAuth
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    enableBlob: storageEndpointConfig.enableBlob
    enableQueue: storageEndpointConfig.enableQueue
    enableTable: storageEndpointConfig.enableTable
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    graphCredential: graphCredential
    keyVaultName: useSecret ? vaultName : ''
    graphClientSecretName: graphClientSecretName
    flexFunctionAppLogs: flexFunctionAppLogs
    appSettings: union(contractAppSettings, graphBaseUrlSettings, graphAuthorityHostSettings)
  }
}

// Outputs: azd writes them into the environment (.azure/<env>/.env). None holds a secret.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTIONS_HOSTING_PLAN string = hostingPlan
output SERVICE_API_NAME string = api.outputs.SERVICE_API_NAME
output SERVICE_API_URI string = api.outputs.SERVICE_API_URI
output AZURE_FUNCTION_APP_NAME string = api.outputs.SERVICE_API_NAME
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_DEPLOYMENT_CONTAINER_NAME string = deploymentStorageContainerName
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output CLEANUP_QUEUE_NAME string = storage.outputs.cleanupQueueName
output CLEANUP_POISON_QUEUE_NAME string = storage.outputs.cleanupPoisonQueueName
output CALL_EVENTS_QUEUE_NAME string = storage.outputs.callEventsQueueName
// Empty when the topic is off.
output CALL_EVENTS_TOPIC_ENDPOINT string = callEventsTopicOn ? callEvents.outputs.endpoint : ''
output CALL_EVENTS_TOPIC_NAME string = callEventsTopicOn ? callEvents.outputs.name : ''
output CALL_EVENTS_DEADLETTER_CONTAINER_NAME string = callEventsTopicOn ? callEvents.outputs.deadLetterContainerName : ''
output FUNCTION_APP_URL string = api.outputs.SERVICE_API_URI
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.applicationInsightsConnectionString
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output API_IDENTITY_NAME string = apiUserAssignedIdentity.outputs.name
output API_IDENTITY_CLIENT_ID string = apiUserAssignedIdentity.outputs.clientId
output API_IDENTITY_PRINCIPAL_ID string = apiUserAssignedIdentity.outputs.principalId
output GRAPH_IDENTITY_NAME string = graphUserAssignedIdentity.outputs.name
output GRAPH_IDENTITY_CLIENT_ID string = graphUserAssignedIdentity.outputs.clientId
output GRAPH_IDENTITY_PRINCIPAL_ID string = graphUserAssignedIdentity.outputs.principalId
output GRAPH_CREDENTIAL string = graphCredential
output GRAPH_FEDERATED_CREDENTIAL_ISSUER string = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
output GRAPH_FEDERATED_CREDENTIAL_SUBJECT string = graphUserAssignedIdentity.outputs.principalId
output GRAPH_FEDERATED_CREDENTIAL_AUDIENCE string = federatedCredentialAudience
output AZURE_KEY_VAULT_NAME string = useSecret ? vaultName : ''
output APPLICATIONINSIGHTS_ENTRA_AUTH bool = applicationInsightsEntraAuth
