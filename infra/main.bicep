// Deploys ci-sendgrid-export: a Flex Consumption Function App that reads Customer Insights
// exports from Blob Storage and sends them to SendGrid, with everything reached by a managed
// identity (no storage keys, no connection strings), the SendGrid key in Key Vault, and logs in
// Application Insights. `azd up` runs this; see the README's "Deploy" section.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names and tags every resource.')
param environmentName string

@minLength(1)
@description('Region of every resource (one that offers the Flex Consumption plan).')
@metadata({ azd: { type: 'location' } })
param location string

@description('The run engine\'s queue (RUN_QUEUE, shared/engine/), in the host\'s storage account.')
param runQueueName string = 'export-runs'

@description('Object id of the principal deploying; gets Key Vault Secrets Officer to set the SendGrid key. Empty: none.')
param principalId string = ''

// azd (1.17.1 and later) fills AZURE_PRINCIPAL_TYPE in main.parameters.json from how it is
// logged in: 'User', or 'ServicePrincipal' after `azd auth login --client-id` (a pipeline).
// Source: Azure/azure-dev cli/azd/pkg/infra/provisioning/current_principal_id_provider.go
// (CurrentPrincipalType) and bicep_provider.go (evalParamEnvSubst); CHANGELOG 1.17.1, PR #5285.
// Older azd leaves it unset: the default applies, or set it with `azd env set`.
@description('What principalId is; a role assignment with the wrong type fails (UnmatchedPrincipalType).')
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

@description('Existing storage account that holds the Customer Insights exports. Empty: create one.')
param sourceStorageAccountName string = ''

@description('Resource group of that existing account. Empty: the one this deployment creates.')
param sourceStorageResourceGroup string = ''

@description('Container Customer Insights exports into.')
param sourceContainerName string = 'customer-insights'

@description('Container for run reports, rejects, checkpoints, the delivered record and locks (in the app\'s own state account).')
param stateContainerName string = 'sendgrid-export-state'

@description('Days before the lifecycle policy deletes a rejects CSV (REJECTS_RETENTION_DAYS); they hold profile data.')
@minValue(1)
@maxValue(3650)
param rejectsRetentionDays int = 30

@description('Key Vault secret that holds the SendGrid API key.')
param sendGridSecretName string = 'sendgrid-api-key'

@description('SendGrid API root; EU regional subusers use https://api.eu.sendgrid.com.')
param sendGridApiBaseUrl string = 'https://api.sendgrid.com'

@description('JSON array of export definitions (see the README); when set, it wins over exports.json deployed with the app. Empty: the app reads exports.json.')
param exportDefinitions string = ''

@description('NCRONTAB schedule of the timer that runs every enabled export.')
param exportSchedule string = '0 0 2 * * *'

@description('E-mail address alerts go to (ALERT_EMAIL). Empty: the action group has no receiver.')
param alertEmail string = ''

@description('Hours without a succeeded run of an export before the stale-export alert fires (ALERT_STALE_HOURS).')
@minValue(1)
@maxValue(47)
param alertStaleHours int = 26

@description('Percentage of a run\'s rows rejected above which the reject alert fires (ALERT_REJECT_RATE).')
@minValue(0)
@maxValue(100)
param alertRejectRate int = 5

@description('Zone-redundant plan and host storage; set false in a region without availability zones.')
param zoneRedundant bool = true

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var createSource = empty(sourceStorageAccountName)
var sourceAccountName = createSource ? 'stsrc${token}' : sourceStorageAccountName
var sourceGroupName = empty(sourceStorageResourceGroup) ? group.name : sourceStorageResourceGroup

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: group
  params: {
    name: 'id-sgexport-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: group
  params: {
    workspaceName: 'log-${token}'
    insightsName: 'appi-${token}'
    location: location
    tags: tags
    publisherPrincipalId: identity.outputs.principalId
  }
}

// Alerts on failed, stale and rejecting runs, failed imports and poison messages; the workbook.
module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: group
  params: {
    insightsId: monitoring.outputs.insightsId
    location: location
    tags: tags
    alertEmail: alertEmail
    staleHours: alertStaleHours
    rejectPercent: alertRejectRate
    runQueueName: runQueueName
  }
}

module hostStorage 'modules/host-storage.bicep' = {
  name: 'host-storage'
  scope: group
  params: {
    name: 'sthost${token}'
    location: location
    tags: tags
    deploymentContainerName: 'app-package-${token}'
    appPrincipalId: identity.outputs.principalId
    skuName: zoneRedundant ? 'Standard_GZRS' : 'Standard_GRS'
    runQueueName: runQueueName
    eventGridPrincipalId: sourceEvents.outputs.principalId
  }
}

// A run on every new Customer Insights export: BlobCreated events of metadata blobs go into the
// run queue (the system topic lives beside the source account, in the account's region).
module sourceEvents 'modules/source-events.bicep' = {
  name: 'source-events'
  scope: resourceGroup(sourceGroupName)
  params: {
    sourceAccountName: sourceAccountName
    location: location
    tags: tags
  }
  dependsOn: [group, sourceAccount]
}

module sourceEventSubscription 'modules/source-event-subscription.bicep' = {
  name: 'source-event-subscription'
  scope: resourceGroup(sourceGroupName)
  params: {
    topicName: sourceEvents.outputs.name
    sourceContainerName: sourceContainerName
    hostStorageId: hostStorage.outputs.id
    runQueueName: hostStorage.outputs.runQueueName
  }
  dependsOn: [sourceStorage]
}

module sourceAccount 'modules/source-account.bicep' = if (createSource) {
  name: 'source-account'
  scope: group
  params: {
    name: sourceAccountName
    location: location
    tags: tags
  }
}

module sourceStorage 'modules/source-container.bicep' = {
  name: 'source-container'
  scope: resourceGroup(sourceGroupName)
  params: {
    accountName: sourceAccountName
    sourceContainerName: sourceContainerName
    appPrincipalId: identity.outputs.principalId
  }
  dependsOn: [group, sourceAccount]
}

// The app's state (reports, rejects, checkpoints, delivered record, locks) in an account only
// the app writes to; see the module for why not the source or the host account.
module stateStorage 'modules/state-storage.bicep' = {
  name: 'state-storage'
  scope: group
  params: {
    name: 'ststate${token}'
    location: location
    tags: tags
    containerName: stateContainerName
    appPrincipalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
    rejectsRetentionDays: rejectsRetentionDays
    skuName: zoneRedundant ? 'Standard_GZRS' : 'Standard_GRS'
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: group
  params: {
    name: 'kv-${token}'
    location: location
    tags: tags
    appPrincipalId: identity.outputs.principalId
    operatorPrincipalId: principalId
    operatorPrincipalType: principalType
    workspaceId: monitoring.outputs.workspaceId
  }
}

module app 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: group
  params: {
    name: 'func-sgexport-${token}'
    planName: 'plan-${token}'
    location: location
    tags: union(tags, { 'azd-service-name': 'exporter' })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    hostStorageName: hostStorage.outputs.name
    deploymentContainerUrl: hostStorage.outputs.deploymentContainerUrl
    insightsConnectionString: monitoring.outputs.connectionString
    zoneRedundant: zoneRedundant
    appSettings: {
      SOURCE_STORAGE_ACCOUNT_URL: sourceStorage.outputs.blobEndpoint
      SOURCE_CONTAINER: sourceContainerName
      STATE_STORAGE_ACCOUNT_URL: stateStorage.outputs.blobEndpoint
      STATE_CONTAINER: stateContainerName
      KEY_VAULT_URL: vault.outputs.uri
      SENDGRID_API_KEY_SECRET_NAME: sendGridSecretName
      SENDGRID_API_BASE_URL: sendGridApiBaseUrl
      EXPORT_DEFINITIONS: exportDefinitions
      EXPORT_SCHEDULE: exportSchedule
      // Under host.json's functionTimeout (30 min); the rest are the app's defaults, made visible.
      RUN_TIME_LIMIT_SECONDS: '1500'
      JOB_WAIT_SECONDS: '21600'
      // The run engine: its queue (by identity, on the host account) and its delays.
      RUN_QUEUE: runQueueName
      AzureWebJobsStorage__queueServiceUri: hostStorage.outputs.queueEndpoint
      CONFIRM_INTERVAL_SECONDS: '60'
      SNAPSHOT_SETTLE_SECONDS: '120'
      RUN_LEASE_SECONDS: '60'
      SENDGRID_MAX_CONTACTS_PER_REQUEST: '30000'
    }
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = group.name
output FUNCTION_APP_NAME string = app.outputs.name
output FUNCTION_URL_BASE string = app.outputs.apiBaseUrl
output KEY_VAULT_NAME string = vault.outputs.name
output SENDGRID_SECRET_NAME string = sendGridSecretName
output SOURCE_STORAGE_ACCOUNT string = sourceAccountName
output STATE_STORAGE_ACCOUNT string = stateStorage.outputs.name
output STATE_CONTAINER string = stateContainerName
