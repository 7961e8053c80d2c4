// The function app on Flex Consumption (FC1): only what Microsoft's Flex quickstarts set. The runtime and
// scale live in functionAppConfig; siteConfig holds minTlsVersion and the app settings. None of the site
// properties that Flex refuses (ARM error 51021) or that Learn's "Flex Consumption plan deprecations" table
// lists is set here (tests/infra/test_flex.py holds that list against this file).
param name string
param location string
param tags object
param appServicePlanId string

@description('Resource id of the app\'s user-assigned identity (storage, telemetry, deployment package).')
param identityId string

@description('Resource id of the Graph identity: Key Vault references resolve with it.')
param graphIdentityId string

@description('The app settings, as name/value pairs.')
param appSettings array

@description('Blob container the package is deployed to (read with the app\'s identity).')
param deploymentContainerUrl string

@description('Most on-demand instances of each per-function scale group (all HTTP functions together, each other function on its own), not of the app as a whole; 1 to 1,000 (Learn, event-driven scaling).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory of each instance, in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

param runtimeName string
param runtimeVersion string

resource api 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Callers are the bot (function key) and Graph's notifications, which present no client certificate
  // checkov:skip=CKV_AZURE_222:The bot and Microsoft Graph reach the API over the internet; every route needs a function key
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales by scaleAndConcurrency and has no numberOfWorkers
  // checkov:skip=CKV_AZURE_213:The contract defines no health route and Flex Consumption manages instance health itself
  // checkov:skip=CKV_AZURE_82:The Python version is functionAppConfig.runtime.version; pythonVersion is a Windows setting
  // checkov:skip=CKV_AZURE_78:Flex Consumption has no FTP and refuses siteConfig.ftpsState with ARM 51021; FTP basic publishing is off
  // checkov:skip=CKV_AZURE_18:Flex Consumption gets only minTlsVersion in siteConfig, as the Microsoft Flex templates
  // checkov:skip=CKV_AZURE_67:Flex Consumption gets only minTlsVersion in siteConfig, as the Microsoft Flex templates
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
      '${graphIdentityId}': {}
    }
  }
  properties: {
    serverFarmId: appServicePlanId
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: graphIdentityId
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
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
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: appSettings
    }
  }
}

output defaultHostName string = api.properties.defaultHostName
