// The Functions host's own storage (AzureWebJobsStorage, timer leases, the deployment package,
// the run queue of shared/engine/), reached by identities only: shared keys are off.
param name string
param location string
param tags object
param deploymentContainerName string
param appPrincipalId string
@description('The run queue (RUN_QUEUE): the app enqueues, the queue trigger reads.')
param runQueueName string
@description('The Event Grid system topic on the source account: it may only add messages to the run queue.')
param eventGridPrincipalId string
@description('A system topic\'s identity is a service principal.')
param eventGridPrincipalType string = 'ServicePrincipal'
@description('Geo-replicated; zone-redundant too (GZRS) when the plan is.')
@allowed(['Standard_GZRS', 'Standard_GRS'])
param skuName string = 'Standard_GZRS'

var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageQueueDataMessageSender = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: skuName }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource deployments 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

// The host keeps leases and state in blobs and reads its package: Blob Data Owner on its own
// account, as the Flex Consumption identity-based setup requires.
resource hostAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, storageBlobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource runQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queues
  name: runQueueName
}

// The queue trigger reads, updates and deletes messages (and writes <queue>-poison); the app
// sends run, continue and confirm messages: Queue Data Contributor on the account.
resource appQueueAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, appPrincipalId, storageQueueDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Event Grid delivers BlobCreated events with its own identity: Message Sender on the run queue only.
resource eventGridQueueAccess 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(runQueue.id, eventGridPrincipalId, storageQueueDataMessageSender)
  scope: runQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSender)
    principalId: eventGridPrincipalId
    principalType: eventGridPrincipalType
  }
}

output name string = account.name
output id string = account.id
output queueEndpoint string = account.properties.primaryEndpoints.queue
output runQueueName string = runQueue.name
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
