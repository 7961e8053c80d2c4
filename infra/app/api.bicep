// The function app (Linux, Python): Flex Consumption by default, Elastic Premium by parameter.
// App settings are built by union(): the contract settings from main.bicep, identity-based AzureWebJobsStorage,
// Application Insights with Entra authentication, and exactly one Graph credential.
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

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Contract settings (CALLS_TABLE_NAME, KEEPALIVE_SCHEDULE, GRAPH_CLIENT_ID, ...).')
param appSettings object = {}

param enableBlob bool = true
param enableQueue bool = true
param enableTable bool = true

@description('Flex Consumption: most instances the app scales out to.')
@minValue(40)
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

var isFlex = hostingPlan == 'FlexConsumption'
var useSecret = graphCredential == 'secret'

resource stg 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Identity-based host storage: no connection string, no account key.
var storageIdentitySettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
}
var blobSettings = enableBlob ? { AzureWebJobsStorage__blobServiceUri: stg.properties.primaryEndpoints.blob } : {}
var queueSettings = enableQueue ? { AzureWebJobsStorage__queueServiceUri: stg.properties.primaryEndpoints.queue } : {}
var tableSettings = enableTable ? { AzureWebJobsStorage__tableServiceUri: stg.properties.primaryEndpoints.table } : {}

// The connection string names the ingestion endpoint (not a secret); local auth is off, so the host
// authenticates with the identity (Monitoring Metrics Publisher).
var monitoringSettings = {
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  AZURE_CLIENT_ID: identityClientId
}

// Exactly one Graph credential. GRAPH_CLIENT_CERTIFICATE_PATH is never set here: a PEM file path has no
// place on Flex Consumption (read-only package, no certificate store); it is for local or dedicated hosting.
var graphCredentialSettings = useSecret ? {
  GRAPH_CLIENT_SECRET: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${graphClientSecretName})'
} : {
  GRAPH_MANAGED_IDENTITY_CLIENT_ID: identityClientId
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

var flexFunctionAppConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: '${stg.properties.primaryEndpoints.blob}${deploymentStorageContainerName}'
      authentication: {
        type: 'UserAssignedIdentity'
        userAssignedIdentityResourceId: identityId
      }
    }
  }
  scaleAndConcurrency: {
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
  runtime: {
    name: runtimeName
    version: runtimeVersion
  }
}

resource api 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Callers are the bot (function key) and Graph's notifications, which present no client certificate
  // checkov:skip=CKV_AZURE_222:The bot and Microsoft Graph reach the API over the internet; every route needs a function key
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales by scaleAndConcurrency and has no numberOfWorkers; Elastic Premium scales elastically
  // checkov:skip=CKV_AZURE_213:The contract defines no health route and Flex Consumption manages instance health itself
  // checkov:skip=CKV_AZURE_82:Python version is set by functionAppConfig.runtime (Flex) or linuxFxVersion (Premium); pythonVersion is a Windows setting
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: appServicePlanId
    reserved: true
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    functionAppConfig: isFlex ? flexFunctionAppConfig : null
    siteConfig: {
      linuxFxVersion: isFlex ? null : 'Python|${runtimeVersion}'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: [for setting in items(allAppSettings): {
        name: setting.key
        value: setting.value
      }]
    }
  }
}

output SERVICE_API_NAME string = api.name
output SERVICE_API_URI string = 'https://${api.properties.defaultHostName}'
output id string = api.id
