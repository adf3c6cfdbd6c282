// The source container in the account that holds the Customer Insights exports (new or
// existing), and the app's one role there: Storage Blob Data Reader on that container. The app
// never writes to this account: its state lives in its own account (state-storage.bicep), out
// of reach of whoever can write the exports.
param accountName string
param sourceContainerName string
param appPrincipalId string

var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: accountName

  resource blobs 'blobServices' existing = {
    name: 'default'
  }
}

resource sourceContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: account::blobs
  name: sourceContainerName
  properties: { publicAccess: 'None' }
}

resource readExports 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(sourceContainer.id, appPrincipalId, storageBlobDataReader)
  scope: sourceContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output blobEndpoint string = account.properties.primaryEndpoints.blob
