// Role assignments, each at the narrowest scope that works, and each identity with only what its job needs:
// - the app's identity (storage identity): blob, queue and table data roles at the storage account (the
//   host creates its own containers (azure-webjobs-hosts, -secrets) and poison queues (<name>-poison), and
//   the app creates its table and queues when missing, so a narrower scope would break them), and
//   Monitoring Metrics Publisher at the Application Insights component when ingestion is Entra-only.
//   It is trusted by no app registration, so it cannot call Microsoft Graph.
// - the Graph identity: Key Vault Secrets User at the vault, only with the secret option. It holds no
//   storage role; the bot's app registration trusts it (federated credential) or it reads the secret.
// - the bot (optional botPrincipalId): what a queue trigger needs on the cleanup queue (Storage Queue Data
//   Reader and Storage Queue Data Message Processor, the roles Learn lists for a queue trigger with an
//   identity-based connection: "Connecting to host storage with an identity", functions-reference), and on
//   its poison queue Storage Queue Data Message Sender (a Functions-hosted bot's host moves a message that
//   failed maxDequeueCount times there; the storage module creates the queue, so no account-wide right is
//   needed) and Message Processor (to read and delete what landed there). Nothing else.
param storageAccountName string
param applicationInsightsName string
param managedIdentityPrincipalId string
param graphIdentityPrincipalId string
param enableBlob bool = true
param enableQueue bool = true
param enableTable bool = true

@description('Application Insights accepts only Entra-authenticated telemetry: the app\'s identity needs Monitoring Metrics Publisher.')
param applicationInsightsEntraAuth bool = true

@description('Name of the vault that holds GRAPH_CLIENT_SECRET; empty when the secretless option is used.')
param keyVaultName string = ''

@description('Queue that receives callEnded events (CLEANUP_QUEUE_NAME).')
param cleanupQueueName string

@description('Its poison queue (<CLEANUP_QUEUE_NAME>-poison), created by the storage module.')
param cleanupPoisonQueueName string

@description('Object id of the bot\'s identity (a managed identity or the service principal of its app registration); empty for none.')
param botPrincipalId string = ''

var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
var storageQueueDataContributorRoleId = '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
var storageQueueDataMessageProcessorRoleId = '8a0f0c08-91a1-4084-bc3d-661d67233fed' // Storage Queue Data Message Processor
var storageQueueDataReaderRoleId = '19e7f393-937e-4f77-808e-94535e297925' // Storage Queue Data Reader
var storageQueueDataMessageSenderRoleId = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a' // Storage Queue Data Message Sender

var enableKeyVault = !empty(keyVaultName)
var enableBot = !empty(botPrincipalId)

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storageAccount
  name: 'default'
}

resource cleanupQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: cleanupQueueName
}

resource cleanupPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: cleanupPoisonQueueName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' existing = if (enableKeyVault) {
  name: keyVaultName
}

resource blobRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableBlob) {
  name: guid(storageAccount.id, managedIdentityPrincipalId, storageBlobDataOwnerRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource queueRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableQueue) {
  name: guid(storageAccount.id, managedIdentityPrincipalId, storageQueueDataContributorRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributorRoleId)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource tableRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableTable) {
  name: guid(storageAccount.id, managedIdentityPrincipalId, storageTableDataContributorRoleId)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource monitoringRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (applicationInsightsEntraAuth) {
  name: guid(applicationInsights.id, managedIdentityPrincipalId, monitoringMetricsPublisherRoleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: managedIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource keyVaultRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableKeyVault) {
  name: guid(keyVault.id, graphIdentityPrincipalId, keyVaultSecretsUserRoleId)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: graphIdentityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource botQueueRoleAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableBot) {
  name: guid(cleanupQueue.id, botPrincipalId, storageQueueDataMessageProcessorRoleId)
  scope: cleanupQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageProcessorRoleId)
    principalId: botPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource botQueueReaderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableBot) {
  name: guid(cleanupQueue.id, botPrincipalId, storageQueueDataReaderRoleId)
  scope: cleanupQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataReaderRoleId)
    principalId: botPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource botPoisonSenderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableBot) {
  name: guid(cleanupPoisonQueue.id, botPrincipalId, storageQueueDataMessageSenderRoleId)
  scope: cleanupPoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSenderRoleId)
    principalId: botPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource botPoisonProcessorAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (enableBot) {
  name: guid(cleanupPoisonQueue.id, botPrincipalId, storageQueueDataMessageProcessorRoleId)
  scope: cleanupPoisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageProcessorRoleId)
    principalId: botPrincipalId
    principalType: 'ServicePrincipal'
  }
}
