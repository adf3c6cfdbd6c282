// Alerts on the app's telemetry (shared/telemetry.py: the ExportRun custom event) in the
// workspace-based Application Insights, one action group for all of them, and the operations
// workbook. The queries are in infra/alerts/*.kql (tests/test_infra.py checks every table and
// column they use against what the app emits); README "Operations" says what each alert means.
param insightsId string
param location string
param tags object
@description('E-mail address the alerts go to. Empty: the action group has no receiver (wire one up in the portal).')
param alertEmail string = ''
@description('Hours without a succeeded run of an export before alert (2) fires (ALERT_STALE_HOURS).')
@minValue(1)
@maxValue(47)
param staleHours int = 26
@description('Percentage of rows rejected in a run above which alert (3) fires (ALERT_REJECT_RATE).')
@minValue(0)
@maxValue(100)
param rejectPercent int = 5
@description('The run queue (RUN_QUEUE): alert (5) looks for a message moved to its poison queue, <runQueueName>-poison.')
param runQueueName string

var receivers = empty(alertEmail) ? [] : [
  { name: 'operator', emailAddress: alertEmail, useCommonAlertSchema: true }
]

resource actions 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-sgexport'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'sgexport'
    enabled: true
    emailReceivers: receivers
  }
}

// name, severity (0 critical .. 4 verbose), how often, over what window, the query.
var rules = [
  {
    name: 'export-run-failed'
    title: 'An export run failed'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    query: loadTextContent('../alerts/run-failed.kql')
  }
  {
    name: 'export-no-success'
    title: 'No succeeded run of an export in ${staleHours} hours'
    severity: 1
    frequency: 'PT1H'
    window: 'P2D'
    query: replace(loadTextContent('../alerts/no-success.kql'), '{staleHours}', string(staleHours))
  }
  {
    name: 'export-reject-rate'
    title: 'A run rejected more than ${rejectPercent}% of its rows'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    query: replace(loadTextContent('../alerts/reject-rate.kql'), '{rejectPercent}', string(rejectPercent))
  }
  {
    name: 'export-import-failed'
    title: 'Contacts failed in SendGrid\'s import'
    severity: 2
    frequency: 'PT15M'
    window: 'PT15M'
    query: loadTextContent('../alerts/import-failed.kql')
  }
  {
    name: 'export-poison-message'
    title: 'A message reached the poison queue ${runQueueName}-poison'
    severity: 1
    frequency: 'PT15M'
    window: 'PT15M'
    query: replace(loadTextContent('../alerts/poison-message.kql'), '{runQueueName}', string(runQueueName))
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = [for rule in rules: {
  name: rule.name
  location: location
  tags: tags
  properties: {
    displayName: rule.title
    description: 'ci-sendgrid-export: see the README, section Operations.'
    severity: rule.severity
    enabled: true
    scopes: [insightsId]
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: false
    actions: { actionGroups: [actions.id] }
  }
}]

// The operations workbook: runs per export, sent / rejected / failed over time, run duration.
resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(insightsId, 'ci-sendgrid-export-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'ci-sendgrid-export runs'
    category: 'workbook'
    sourceId: insightsId
    serializedData: loadTextContent('../workbook.json')
  }
}

output actionGroupId string = actions.id
output workbookId string = workbook.id
