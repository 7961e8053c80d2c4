// Key Vault for the secret option (GRAPH_CLIENT_SECRET): RBAC authorization only (no access policies),
// soft delete and purge protection. The operator writes the secret after deployment (docs/deploy.md);
// no secret value ever passes through this template or the deployment history.
param name string
param location string = resourceGroup().location
param tags object = {}

@description('Log Analytics workspace that receives the vault\'s audit logs (diagnostic settings).')
param logAnalyticsWorkspaceId string

@minValue(7)
@maxValue(90)
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:Without a virtual network the Flex Consumption app resolves its Key Vault reference over the public endpoint; access is RBAC-only
  // checkov:skip=CKV_AZURE_189:Public endpoint needed for Key Vault references from an app without virtual network integration; every read needs an Entra token and Key Vault Secrets User
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Every access to the vault (AuditEvent: who read which secret) goes to Log Analytics.
resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: vault
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output id string = vault.id
output name string = vault.name
output uri string = vault.properties.vaultUri
