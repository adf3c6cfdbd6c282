// The app's own state account: run reports, rejects, checkpoints, the delivered record and the
// run locks (STATE_STORAGE_ACCOUNT_URL). It is a separate account, not a container in the source
// account (Customer Insights' connection can write there, and could forge a checkpoint or edit
// the delivered record) nor in the host account (the app holds Blob Data Owner on all of that
// one, and the Functions host writes leases and timer status there every few seconds, which
// would bury the write/delete audit log below and fill it with blob versions).
//
// Here the app holds Storage Blob Data Contributor on the state container only; blob
// versioning and soft delete keep every overwritten or deleted state blob recoverable for a
// while; a lifecycle policy deletes rejects CSVs (they hold profile data) after
// `rejectsRetentionDays`, and old versions after `versionRetentionDays`; writes and deletes
// are logged to the Log Analytics workspace.
@minLength(3)
@maxLength(24)
param name string
param location string
param tags object
param containerName string
param appPrincipalId string
@description('Log Analytics workspace that receives the blob write/delete logs.')
param workspaceId string
@description('Days a rejects CSV (rows not sent, with profile data) is kept before the lifecycle policy deletes it.')
@minValue(1)
@maxValue(3650)
param rejectsRetentionDays int = 30
@description('Days a previous version of a state blob (an overwritten record, report or checkpoint) is kept.')
@minValue(1)
@maxValue(3650)
param versionRetentionDays int = 30
@description('Days a deleted blob or container stays recoverable (soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 7
@allowed(['Standard_GZRS', 'Standard_GRS'])
param skuName string = 'Standard_GZRS'

var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

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
    // A forged or mistaken overwrite of the record or a checkpoint can be rolled back.
    isVersioningEnabled: true
    deleteRetentionPolicy: { enabled: true, days: softDeleteDays }
    containerDeleteRetentionPolicy: { enabled: true, days: softDeleteDays }
  }
}

resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: containerName
  properties: { publicAccess: 'None' }
}

// Lifecycle rules run about once a day, so a blob goes up to a day after its age is reached;
// a deleted blob then stays in soft delete for `softDeleteDays`. With versioning on, deleting
// a rejects CSV leaves it as a previous version: the `version` action removes that too.
// Prefixes are "<container>/<blob prefix>" (Azure Storage lifecycle management docs:
// https://learn.microsoft.com/azure/storage/blobs/lifecycle-management-overview#rule-filters).
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-rejects'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${containerName}/rejects/']
            }
            actions: {
              baseBlob: { delete: { daysAfterModificationGreaterThan: rejectsRetentionDays } }
              version: { delete: { daysAfterCreationGreaterThan: rejectsRetentionDays } }
              snapshot: { delete: { daysAfterCreationGreaterThan: rejectsRetentionDays } }
            }
          }
        }
        {
          name: 'expire-old-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${containerName}/']
            }
            actions: {
              version: { delete: { daysAfterCreationGreaterThan: versionRetentionDays } }
            }
          }
        }
      ]
    }
  }
}

// Who wrote or deleted which state blob, in the StorageBlobLogs table.
resource blobAudit 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'state-writes-to-log-analytics'
  scope: blobs
  properties: {
    workspaceId: workspaceId
    logs: [
      { category: 'StorageWrite', enabled: true }
      { category: 'StorageDelete', enabled: true }
    ]
  }
}

// Reports, rejects, checkpoints, the record and the run locks (blob leases) are all in this
// container: Contributor on it is enough, and nothing else in the account is in reach.
resource writeState 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(stateContainer.id, appPrincipalId, storageBlobDataContributor)
  scope: stateContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
