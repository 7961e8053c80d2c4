// The function app (Linux, Python): Flex Consumption by default, Elastic Premium by parameter.
// App settings are built by union(): the contract settings from main.bicep, identity-based AzureWebJobsStorage,
// Application Insights (Entra authentication where the cloud offers it), and exactly one Graph credential.
// Two user-assigned identities: the app's (storage, telemetry, deployment package) and the Graph identity
// (the federated credential's subject, or the Key Vault reference to the client secret), so that neither
// can do the other's job. Flex Consumption refuses a set of site properties (ARM error 51021) and deprecates
// a set of app settings: the Flex site sets none of them (tests/infra/test_flex.py holds the list).
param name string
param location string = resourceGroup().location
param tags object = {}
param serviceName string = 'api'
param appServicePlanId string

@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

param runtimeName string = 'python'
param runtimeVersion string = '3.11'

param storageAccountName string
param deploymentStorageContainerName string
param applicationInsightsName string

@description('Resource id of the app\'s user-assigned identity (storage, telemetry, deployment package).')
param identityId string

@description('Client id of the app\'s user-assigned identity.')
param identityClientId string

@description('Resource id of the Graph identity (federated credential subject, Key Vault reference).')
param graphIdentityId string

@description('Client id of the Graph identity.')
param graphIdentityClientId string

@description('Application Insights accepts only Entra-authenticated telemetry (APPLICATIONINSIGHTS_AUTHENTICATION_STRING is set).')
param applicationInsightsEntraAuth bool = true

@description('Log Analytics workspace that receives the app\'s logs (diagnostic settings).')
param logAnalyticsWorkspaceId string

@description('Contract settings (CALLS_TABLE_NAME, KEEPALIVE_SCHEDULE, GRAPH_CLIENT_ID, ...).')
param appSettings object = {}

param enableBlob bool = true
param enableQueue bool = true
param enableTable bool = true

@description('Most on-demand instances of each per-function scale group (all HTTP functions together, each other function on its own), not of the app as a whole; 1 to 1,000 (Learn, event-driven scaling).')
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

@description('managedIdentity: GRAPH_MANAGED_IDENTITY_CLIENT_ID (federated credential); secret: GRAPH_CLIENT_SECRET as a Key Vault reference.')
@allowed([
  'managedIdentity'
  'secret'
])
param graphCredential string = 'managedIdentity'

@description('Vault that holds the Graph client secret (secret option only).')
param keyVaultName string = ''

@description('Name of the Key Vault secret that holds the Graph client secret.')
param graphClientSecretName string = 'graph-client-secret'

@description('Elastic Premium only: blob name of the package the app runs from, in the deployment container.')
param premiumPackageBlobName string = 'callkeeper.zip'

@description('Flex Consumption: also send FunctionAppLogs to Log Analytics through a diagnostic setting (off by default; always on with Elastic Premium).')
param flexFunctionAppLogs bool = false

var isFlex = hostingPlan == 'FlexConsumption'
var useSecret = graphCredential == 'secret'

resource stg 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Identity-based host storage: no connection string, no account key. AZURE_CLIENT_ID makes any SDK default
// credential the app's identity, never the Graph identity.
var storageIdentitySettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
}
var blobSettings = enableBlob ? { AzureWebJobsStorage__blobServiceUri: stg.properties.primaryEndpoints.blob } : {}
var queueSettings = enableQueue ? { AzureWebJobsStorage__queueServiceUri: stg.properties.primaryEndpoints.queue } : {}
var tableSettings = enableTable ? { AzureWebJobsStorage__tableServiceUri: stg.properties.primaryEndpoints.table } : {}

// The connection string names the ingestion endpoint (not a secret). With Entra-only ingestion (local auth
// off) the host authenticates with the app's identity (Monitoring Metrics Publisher).
var monitoringSettings = union({
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
}, applicationInsightsEntraAuth ? {
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
} : {})

// Exactly one Graph credential. GRAPH_CLIENT_CERTIFICATE_PATH is never set here: a PEM file path has no
// place on Flex Consumption (read-only package, no certificate store); it is for local or dedicated hosting.
var graphCredentialSettings = useSecret ? {
  GRAPH_CLIENT_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${graphClientSecretName})'
} : {
  GRAPH_MANAGED_IDENTITY_CLIENT_ID: graphIdentityClientId
}

// Elastic Premium runs without an Azure Files content share (that needs an account key): it runs from a
// package in the deployment container, fetched with the identity.
var premiumSettings = isFlex ? {} : {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: runtimeName
  WEBSITE_RUN_FROM_PACKAGE: '${stg.properties.primaryEndpoints.blob}${deploymentStorageContainerName}/${premiumPackageBlobName}'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identityId
}

var allAppSettings = union(appSettings, storageIdentitySettings, blobSettings, queueSettings, tableSettings, monitoringSettings, graphCredentialSettings, premiumSettings)

var appSettingsList = [for setting in items(allAppSettings): {
  name: setting.key
  value: setting.value
}]

// One site module per plan, each with exactly the properties its plan accepts (see their headers).
var siteTags = union(tags, { 'azd-service-name': serviceName })

module flexSite './site-flex.bicep' = if (isFlex) {
  name: 'site-flex'
  params: {
    name: name
    location: location
    tags: siteTags
    appServicePlanId: appServicePlanId
    identityId: identityId
    graphIdentityId: graphIdentityId
    appSettings: appSettingsList
    deploymentContainerUrl: '${stg.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    runtimeName: runtimeName
    runtimeVersion: runtimeVersion
  }
}

module premiumSite './site-premium.bicep' = if (!isFlex) {
  name: 'site-premium'
  params: {
    name: name
    location: location
    tags: siteTags
    appServicePlanId: appServicePlanId
    identityId: identityId
    graphIdentityId: graphIdentityId
    appSettings: appSettingsList
    linuxFxVersion: 'Python|${runtimeVersion}'
  }
}

// The site, whichever plan created it: parent and scope of what follows.
resource api 'Microsoft.Web/sites@2024-04-01' existing = {
  name: name
}

// No basic (user name and password) publishing: deployments authenticate with Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: api
  name: 'ftp'
  dependsOn: [
    flexSite
    premiumSite
  ]
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: api
  name: 'scm'
  dependsOn: [
    flexSite
    premiumSite
  ]
  properties: {
    allow: false
  }
}

// The app's logs (FunctionAppLogs) in Log Analytics, beside Application Insights. On Flex Consumption only
// on request (flexFunctionAppLogs): Learn's Flex page listed diagnostic settings as unsupported (05/2025:
// "Diagnostic settings: Diagnostic settings aren't currently supported", MicrosoftDocs/azure-docs
// articles/azure-functions/flex-consumption-plan.md); the current page no longer lists them, but no
// Microsoft page says they are accepted, and the one Microsoft report of them working on Flex says that
// they then ignore the host's log filters and send every record (Azure/azure-functions-host#11434,
// 10/2025). Application Insights has the same records either way.
resource apiDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if ((!isFlex) || flexFunctionAppLogs) {
  name: 'to-log-analytics'
  scope: api
  dependsOn: [
    flexSite
    premiumSite
  ]
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
  }
}

output SERVICE_API_NAME string = api.name
output SERVICE_API_URI string = 'https://${isFlex ? flexSite.outputs.defaultHostName : premiumSite.outputs.defaultHostName}'
output id string = api.id
