// The optional Event Grid topic through which callEnded events reach HTTP bots as CloudEvents 1.0 (issue 19;
// the contract's "Call events on Event Grid"). main.bicep deploys it only on request: Event Grid bills every
// operation, published or delivered, even with no subscriber.
// - The topic takes CloudEvents 1.0 only and refuses keys (disableLocalAuth): the app publishes with
//   Microsoft Entra ID as its storage identity, which holds EventGrid Data Sender on this topic only.
// - With a webhook URL, one event subscription delivers CloudEvents to it, retries, and dead-letters what it
//   could not deliver to a blob container through the topic's own (system-assigned) identity: the storage
//   account refuses shared keys, so Event Grid's own identity could not write there
//   (https://learn.microsoft.com/azure/event-grid/managed-service-identity, "deadLetterWithResourceIdentity").
// Types: Microsoft.EventGrid 2025-02-15, the newest stable API (azure-rest-api-specs
// specification/eventgrid/resource-manager/Microsoft.EventGrid/stable/2025-02-15/EventGrid.json), vendored in
// tests/infra/azure_types.json.
param name string
param location string = resourceGroup().location
param tags object = {}

@description('Principal (object) id of the app\'s storage identity (AzureWebJobsStorage__clientId): it publishes with Entra ID.')
param publisherPrincipalId string

@secure()
@description('Optional HTTPS endpoint of the bot that receives the events (it may carry a key in its query string, hence secure). Empty: no subscription.')
param webhookUrl string = ''

@description('Storage account (identity-only) that holds the dead-letter container.')
param storageAccountName string

@description('Blob container for the events the webhook did not take (created with the subscription).')
@minLength(3)
@maxLength(63)
param deadLetterContainerName string = 'call-events-deadletter'

@description('Delivery attempts before an event is dead-lettered (Event Grid allows 1 to 30).')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes an event is retried before it is dead-lettered (Event Grid allows 1 to 1440).')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

var withWebhook = !empty(webhookUrl)
var eventGridDataSenderRoleId = 'd5a91429-5739-47e2-a06b-3470a27159e7' // EventGrid Data Sender
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  // checkov:skip=CKV_AZURE_193:The app on Flex Consumption has no virtual network integration and reaches the topic over its public endpoint; keys are off, so every publish needs an Entra token and EventGrid Data Sender
  name: name
  location: location
  tags: tags
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
    minimumTlsVersionAllowed: '1.2'
  }
}

// The publisher's right, on this topic only.
resource senderAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, publisherPrincipalId, eventGridDataSenderRoleId)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSenderRoleId)
    principalId: publisherPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (withWebhook) {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

// The topic's identity writes dead letters to that container, and nowhere else.
resource deadLetterAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withWebhook) {
  name: guid(deadLetterContainer.id, topic.id, storageBlobDataContributorRoleId)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: topic.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Creating it makes Event Grid send the webhook the CloudEvents validation handshake (an HTTP OPTIONS
// request with WebHook-Request-Origin, answered with WebHook-Allowed-Origin:
// https://learn.microsoft.com/azure/event-grid/end-point-validation-cloud-events-schema): the bot must be
// running and answer it, or the deployment fails (docs/deploy.md).
resource webhookSubscription 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = if (withWebhook) {
  parent: topic
  name: 'bot-webhook'
  dependsOn: [
    deadLetterAssignment
  ]
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: webhookUrl
        maxEventsPerBatch: 1
        minimumTlsVersionAllowed: '1.2'
      }
    }
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: [
        'callkeeper.callEnded'
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storage.id
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output name string = topic.name
// Not a secret: the URL events are published to (keys are off).
output endpoint string = topic.properties.endpoint
output deadLetterContainerName string = withWebhook ? deadLetterContainerName : ''
