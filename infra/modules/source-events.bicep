// An Event Grid system topic on the source account: every new Customer Insights export (its
// model.json or *.manifest.cdm.json) becomes a message on the run queue (see
// source-event-subscription.bicep), so the export runs on every refresh, not only on the timer.
param sourceAccountName string
param location string
param tags object

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: sourceAccountName
}

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'egst-${sourceAccountName}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    source: account.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = topic.name
output principalId string = topic.identity.principalId
