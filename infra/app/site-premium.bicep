// The function app on Elastic Premium (Linux), the option for the US government clouds: the runtime in
// linuxFxVersion, and the site hardening that Flex Consumption does not take.
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

@description('siteConfig.linuxFxVersion, e.g. Python|3.11.')
param linuxFxVersion string

resource api 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_17:Callers are the bot (function key) and Graph's notifications, which present no client certificate
  // checkov:skip=CKV_AZURE_222:The bot and Microsoft Graph reach the API over the internet; every route needs a function key
  // checkov:skip=CKV_AZURE_212:Elastic Premium scales elastically up to the plan's maximumElasticWorkerCount
  // checkov:skip=CKV_AZURE_213:The contract defines no health route
  // checkov:skip=CKV_AZURE_82:The Python version is linuxFxVersion; pythonVersion is a Windows setting
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
    reserved: true
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: graphIdentityId
    siteConfig: {
      linuxFxVersion: linuxFxVersion
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      remoteDebuggingEnabled: false
      appSettings: appSettings
    }
  }
}

output defaultHostName string = api.properties.defaultHostName
