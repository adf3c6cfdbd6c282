// The source and state containers in the account that holds the Customer Insights exports (new
// or existing), and the app's two container-scoped roles: Storage Blob Data Reader on the
// exports, Storage Blob Data Contributor on its state. Reports, rejects, checkpoints, the
// delivered record and the run locks (blob leases) all live in the state container, so a
// container scope is enough and the rest of the account stays out of the app's reach.
param accountName string
param sourceContainerName string
param stateContainerName string
param appPrincipalId string

var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

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

resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: account::blobs
  name: stateContainerName
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

resource writeState 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stateContainer.id, appPrincipalId, storageBlobDataContributor)
  scope: stateContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output blobEndpoint string = account.properties.primaryEndpoints.blob
