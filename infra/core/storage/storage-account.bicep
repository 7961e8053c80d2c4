// Storage for the Functions host and the app: identity-only (no shared key), TLS 1.2, HTTPS only,
// no public blob access. Holds the deployment package container, the calls table, the app's queues and
// their poison queues.
param name string
param location string = resourceGroup().location
param tags object = {}

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
  'Standard_RAGRS'
  'Standard_RAGZRS'
])
param skuName string = 'Standard_LRS'

@description('Blob container that holds the deployment package (Flex Consumption deployment storage).')
param deploymentContainerName string

@description('Table of active calls (CALLS_TABLE_NAME).')
@minLength(3)
@maxLength(63)
param callsTableName string

@description('Queue that receives callEnded events (CLEANUP_QUEUE_NAME); 56 characters at most, so that <name>-poison is a valid queue name (63).')
@minLength(3)
@maxLength(56)
param cleanupQueueName string

@description('Log Analytics workspace that receives the queue and table logs (diagnostic settings).')
param logAnalyticsWorkspaceId string

@description('Queue of fan-out work messages (KEEPALIVE_WORK_QUEUE_NAME); 56 characters at most (<name>-poison).')
@minLength(3)
@maxLength(56)
param workQueueName string

@description('Queue through which callEnded events reach the Event Grid topic (CALL_EVENTS_QUEUE_NAME); 56 characters at most (<name>-poison).')
@minLength(3)
@maxLength(56)
param callEventsQueueName string

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Without a virtual network the Flex Consumption host reaches storage over its public endpoint; access is Entra-only (allowSharedKeyAccess false)
  // checkov:skip=CKV_AZURE_59:Public endpoint needed by the Functions host without a virtual network; shared keys are off, so every request needs an Entra token and a data role
  // checkov:skip=CKV_AZURE_206:Call records live for hours and the app runs in one region; geo-replication is opt-in through skuName (Standard_GZRS, Standard_RAGRS)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource callsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: callsTableName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource cleanupQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: cleanupQueueName
}

resource workQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: workQueueName
}

// Created whether or not a topic exists: the app creates it when missing anyway, and an empty queue costs
// nothing.
resource callEventsQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: callEventsQueueName
}

// The poison queues exist from the start, so that an identity holding only message roles can move a
// failing message there: the Functions host sends to <name>-poison and creates the queue only when that
// send finds it missing (Azure WebJobs queues extension, StorageQueueExtensions.AddMessageAndCreateIfNotExistsAsync,
// Azure/azure-sdk-for-net sdk/storage/Microsoft.Azure.WebJobs.Extensions.Storage.Queues), which needs
// Storage Queue Data Contributor on the account. The bot's Functions host moves callEnded events it
// failed on to <cleanup>-poison (app/rbac.bicep gives it the right there), and the poison alert names all
// three.
var poisonQueueNames = [
  '${cleanupQueueName}-poison'
  '${workQueueName}-poison'
  '${callEventsQueueName}-poison'
]

resource poisonQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for poisonQueueName in poisonQueueNames: {
  parent: queueService
  name: poisonQueueName
}]

// Writes and deletes on the queues and the table go to Log Analytics (StorageQueueLogs, StorageTableLogs):
// an audit of who changed calls and events, and the poison-queue alert (a PutMessage on <queue>-poison).
// Reads are left out: every tick reads the whole table, and those logs would cost more than they tell.
var storageChangeLogs = [
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
]

resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageChangeLogs
  }
}

resource tableDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: tableService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageChangeLogs
  }
}

output id string = storage.id
output name string = storage.name
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output callsTableName string = callsTable.name
output cleanupQueueName string = cleanupQueue.name
output workQueueName string = workQueue.name
output callEventsQueueName string = callEventsQueue.name
output cleanupPoisonQueueName string = poisonQueues[0].name
