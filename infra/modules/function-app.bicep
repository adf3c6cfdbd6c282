// The Function App on the Flex Consumption plan (FC1, Linux, Python 3.11), running as the
// user-assigned identity: host storage, the deployment package and telemetry all by identity.
param name string
param planName string
param location string
param tags object
param identityId string
param identityClientId string
param hostStorageName string
param deploymentContainerUrl string
param insightsConnectionString string
@description('The app settings of the export contract (see the README).')
param appSettings object
@description('Spread instances over availability zones (needs a region that has them).')
param zoneRedundant bool = true

// App settings go in siteConfig.appSettings, as a list of name/value pairs.
var hostSettings = [
  { name: 'AzureWebJobsStorage__accountName', value: hostStorageName }
  { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
  { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
  // DefaultAzureCredential in the app picks the user-assigned identity by this id.
  { name: 'AZURE_CLIENT_ID', value: identityClientId }
  { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insightsConnectionString }
  { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'ClientId=${identityClientId};Authorization=AAD' }
]
var exportSettings = [for setting in items(appSettings): { name: setting.key, value: setting.value }]


resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { name: 'FC1', tier: 'FlexConsumption' }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Callers authenticate with a function key; a client certificate is asked for but not
    // required, and reaches the app (X-ARR-ClientCert) for anyone who wants to pin callers.
    clientCertEnabled: true
    clientCertMode: 'Optional'
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // export_health: anonymous, answers 200 when the app settings are valid (no data, no I/O).
      healthCheckPath: '/api/health'
      appSettings: concat(hostSettings, exportSettings)
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: 2048
        maximumInstanceCount: 40
      }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// No FTP or basic-auth deployment credentials: deployments go through Entra ID.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: { allow: false }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: { allow: false }
}

output name string = site.name
output apiBaseUrl string = 'https://${site.properties.defaultHostName}/api'
