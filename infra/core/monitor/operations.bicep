// What the operators look at and are woken by: an action group (e-mail), log alert rules and a workbook.
// Every query is loaded from infra/queries/*.kql, the one home of the KQL (docs/queries.kql is built from the
// same files; tests/infra/test_kql.py checks both, and that every field a query reads is one the app writes).
param location string = resourceGroup().location
param tags object = {}

@description('Application Insights component: scope of the alerts on the app\'s records, source of the workbook.')
param applicationInsightsId string

@description('Log Analytics workspace: scope of the poison-queue alert (StorageQueueLogs).')
param logAnalyticsWorkspaceId string

@description('Action group name.')
param actionGroupName string

@description('Where alerts are e-mailed; empty for an action group without receivers (add them later).')
param alertEmailAddress string = ''

@description('CLEANUP_QUEUE_NAME: its poison queue is <name>-poison.')
param cleanupQueueName string

@description('KEEPALIVE_WORK_QUEUE_NAME: its poison queue is <name>-poison.')
param workQueueName string

@description('CALL_EVENTS_QUEUE_NAME: its poison queue is <name>-poison.')
param callEventsQueueName string

// The poison-queue query names the default queues; the deployed names take their place.
var poisonQuery = replace(replace(replace(loadTextContent('../../queries/poison-messages.kql'), '/call-cleanup-poison/', '/${cleanupQueueName}-poison/'), '/keepalive-work-poison/', '/${workQueueName}-poison/'), '/call-events-poison/', '/${callEventsQueueName}-poison/')

// skipQueryValidation (API 2023-12-01): ARM validates a log alert's query when the rule is created and
// refuses a table that has no data yet ("SEM0100 Failed to resolve table or column expression",
// Azure/bicep#11378); the Azure Monitor team's advice is to skip the validation
// (https://github.com/mspnp/aks-baseline/pull/422). Every rule here reads a table that is empty on the
// first `azd up`: `traces` of an Application Insights component created in the same deployment (the
// app has sent nothing yet) and `StorageQueueLogs` of a workspace created in the same deployment (the
// table appears with the first queue write). The queries are checked offline instead (tests/infra/test_kql.py).
var skipQueryValidation = true

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'callkeeper'
    enabled: true
    emailReceivers: empty(alertEmailAddress) ? [] : [
      {
        name: 'operator'
        emailAddress: alertEmailAddress
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = {
  actionGroups: [
    actionGroup.id
  ]
}
var oneFailingPeriod = {
  numberOfEvaluationPeriods: 1
  minFailingPeriodsToAlert: 1
}

resource atRiskAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'callkeeper-calls-at-risk'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'callkeeper: calls at risk'
    description: 'A keepalive at risk warning: a call has had no keepAlive success for KEEPALIVE_AT_RISK_MINUTES; Graph ends it after 45.'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/at-risk.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: oneFailingPeriod
        }
      ]
    }
    skipQueryValidation: skipQueryValidation
    autoMitigate: true
    actions: actions
  }
}

resource silenceAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'callkeeper-timer-silent'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'callkeeper: keep-alive timer silent'
    description: 'No keepalive tick or keepalive fanout record for 25 minutes: the timer has stopped sweeping.'
    severity: 0
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT30M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/tick-silence.kql')
          timeAggregation: 'Total'
          metricMeasureColumn: 'records'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: oneFailingPeriod
        }
      ]
    }
    skipQueryValidation: skipQueryValidation
    autoMitigate: true
    actions: actions
  }
}

resource failureRateAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'callkeeper-tick-failures'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'callkeeper: tick failures above 5 %'
    description: 'A keepalive tick whose failures are above 5 % of its calls (see the failures-by-tenant query).'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT10M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('../../queries/failure-rate.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: oneFailingPeriod
        }
      ]
    }
    skipQueryValidation: skipQueryValidation
    autoMitigate: true
    actions: actions
  }
}

resource poisonAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: 'callkeeper-poison-messages'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'callkeeper: messages in a poison queue'
    description: 'A message moved to ${cleanupQueueName}-poison (the bot failed on a callEnded event), ${workQueueName}-poison (a fan-out range failed) or ${callEventsQueueName}-poison (the Event Grid topic did not take an event).'
    severity: 2
    enabled: true
    scopes: [
      logAnalyticsWorkspaceId
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: poisonQuery
          timeAggregation: 'Total'
          metricMeasureColumn: 'messages'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: oneFailingPeriod
        }
      ]
    }
    skipQueryValidation: skipQueryValidation
    autoMitigate: true
    actions: actions
  }
}

// The workbook: one chart per question, over the time range picked at the top (default: the last day).
var workbookQueries = [
  {
    title: 'Ticks over time: calls, succeeded, ended, failed (sums per 10 minutes) and the slowest tick in seconds'
    query: loadTextContent('../../queries/tick-summary.kql')
    visualization: 'timechart'
  }
  {
    title: 'Calls at risk (latest warning per call)'
    query: loadTextContent('../../queries/at-risk.kql')
    visualization: 'table'
  }
  {
    title: '429s per tenant (throttle brakes and calls that failed with 429), per hour'
    query: loadTextContent('../../queries/throttling-by-tenant.kql')
    visualization: 'barchart'
  }
  {
    title: 'callEnded events per hour, by reason'
    query: loadTextContent('../../queries/ended-calls.kql')
    visualization: 'barchart'
  }
]

var workbookQueryItems = [for (item, i) in workbookQueries: {
  type: 3
  name: 'query-${i}'
  content: {
    version: 'KqlItem/1.0'
    title: item.title
    query: item.query
    queryType: 0
    resourceType: 'microsoft.insights/components'
    visualization: item.visualization
    timeContextFromParameter: 'TimeRange'
    timeContext: {
      durationMs: 86400000
    }
    size: 0
  }
}]

var workbookContent = {
  version: 'Notebook/1.0'
  items: concat([
    {
      type: 1
      name: 'intro'
      content: {
        json: '## callkeeper\nKeep-alive ticks, calls at risk, throttling and ended calls. The queries are those of docs/queries.kql.'
      }
    }
    {
      type: 9
      name: 'parameters'
      content: {
        version: 'KqlParameterItem/1.0'
        parameters: [
          {
            id: 'timeRange'
            version: 'KqlParameterItem/1.0'
            name: 'TimeRange'
            type: 4
            isRequired: true
            value: {
              durationMs: 86400000
            }
            typeSettings: {
              selectableValues: [
                {
                  durationMs: 3600000
                }
                {
                  durationMs: 86400000
                }
                {
                  durationMs: 604800000
                }
              ]
            }
          }
        ]
      }
    }
  ], workbookQueryItems)
  fallbackResourceIds: [
    applicationInsightsId
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, applicationInsightsId, 'callkeeper-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'callkeeper operations'
    category: 'workbook'
    // Lower case: the azurerm provider refuses an upper-case source_id for workbooks
    // (hashicorp/terraform-provider-azurerm#27755, validate.StringDoesNotContainUpperCaseLetter), and the
    // workbook gallery matches resource ids case-sensitively (microsoft/Application-Insights-Workbooks#1288).
    sourceId: toLower(applicationInsightsId)
    serializedData: string(workbookContent)
  }
}

output actionGroupId string = actionGroup.id
output workbookId string = workbook.id
