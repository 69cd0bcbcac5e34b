// Every Scorehook resource in one resource group. App setting names: exactly those of shared/settings.py.
param location string
param tags object
param resourceToken string
param modelUri string
param mlflowTrackingUri string
param routes string
param allowedWorkspaces string
param evaluationData string
param onlineEndpoint string
param azuremlWorkspace string
param allowedStorageAccounts string
param subscribeFunctions bool
param principalId string
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string
@secure()
param webhookSecret string
@description('Expiry of the Key Vault secrets, seconds since the epoch.')
param secretsExpireAt int
@description('E-mail address for the alerts of docs/operate.md (empty: no action group, no alerts).')
param alertEmail string = ''
@description('Most Flex Consumption instances: the parts of fanned-out files (queue scorehook-parts) scale out to it, one part per instance at a time (host.json queues batchSize 1).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 100
@description('Memory of one instance: a part holds its parse blocks, batches and output blocks (a few hundred MB).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048
@description('Event Hubs streaming: a namespace with the input, predictions and monitoring hubs, the trigger on.')
param streaming bool = false

// Built-in role definition ids.
var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  eventGridDataSender: 'd5a91429-5739-47e2-a06b-3470a27159e7'
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
}
// Every container a setting names (defaults of shared/settings.py) plus 'evaluation' (the holdout, see
// evaluationData); every queue a function binds (functions/*.py).
var dataContainers = ['incoming', 'scored', 'failed', 'deadletter', 'drift', 'scorehook-models', 'evaluation']
// scorehook-parts: the parts of fanned-out files (shared/fanout.py), one message per part, scored by as many
// instances as the queue's length scales the app to (maximumInstanceCount); -poison: parts the host gave up on.
var dataQueues = ['model-registrations', 'drift-evaluations', 'scorehook-parts', 'scorehook-parts-poison']
var deploymentContainer = 'app-package-${resourceToken}'
// Event Hubs (streaming): the input records (SCOREHOOK_STREAM_HUB), the stream's predictions
// (SCOREHOOK_STREAM_OUTPUT_HUB) and the blob path's predictions and telemetry (a route's eventhub_output:
// "scorehook-monitoring"). Bad records are dead-lettered as blobs (failed/_stream/...), not to a hub.
var eventHubsNamespace = 'evhns-${resourceToken}'
var streamHubs = ['scorehook-records', 'scorehook-predictions', 'scorehook-monitoring']
var streamConsumerGroup = 'scorehook'
// Extra names are trimmed by the app (SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS is a comma-separated list).
var allowedAccounts = empty(trim(allowedStorageAccounts)) ? dataStorage.name : '${dataStorage.name},${allowedStorageAccounts}'

// ---------------------------------------------------------------- monitoring
resource logs 'Microsoft.OperationalInsights/workspaces@2022-10-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: { sku: { name: 'PerGB2018' }, retentionInDays: 30 }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  // The host sends with Entra ID (APPLICATIONINSIGHTS_AUTHENTICATION_STRING). Local auth stays on until every
  // in-process exporter (azure-monitor-opentelemetry) is given a credential; then set DisableLocalAuth: true.
  properties: { Application_Type: 'web', WorkspaceResourceId: logs.id }
}

// ---------------------------------------------------------------- storage
// Functions host storage (AzureWebJobsStorage, identity-based) and the Flex deployment package container.
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches storage over its public endpoint; access is Entra ID only (shared keys off)
  // checkov:skip=CKV_AZURE_206:LRS is the template's cost choice; set Standard_ZRS/GZRS for production
  // checkov:skip=CKV_AZURE_43:false positive, the name is 'st' + uniqueString() (lowercase letters and digits, under 24) which the check cannot evaluate
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
  }
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deploymentContainer
  properties: { publicAccess: 'None' }
}

// The Event Hubs extension keeps its checkpoints in this container of the host storage (AzureWebJobsStorage).
resource eventHubCheckpoints 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (streaming) {
  parent: hostBlobs
  name: 'azure-webjobs-eventhub'
  properties: { publicAccess: 'None' }
}

// Data storage: input files, outputs, failure records, Event Grid dead letters, the ledger table.
resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches storage over its public endpoint; access is Entra ID only (shared keys off)
  // checkov:skip=CKV_AZURE_206:LRS is the template's cost choice; set Standard_ZRS/GZRS for production
  // checkov:skip=CKV_AZURE_43:false positive, the name is 'st' + uniqueString() (lowercase letters and digits, under 24) which the check cannot evaluate
  name: 'stdata${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    accessTier: 'Hot'
    isHnsEnabled: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
  }
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: dataStorage
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in dataContainers: {
    parent: dataBlobs
    name: name
    properties: { publicAccess: 'None' }
  }
]

resource dataQueueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: dataStorage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for name in dataQueues: {
    parent: dataQueueService
    name: name
  }
]

resource dataTables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: dataStorage
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: dataTables
  name: 'ScorehookLedger'
}

// ---------------------------------------------------------------- custom topic + the webhook secret
// Publishing is Entra ID only: the app's identity has EventGrid Data Sender (no key exists to leak).
resource eventsTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_193:the app (no VNet) publishes over the public endpoint; publishing needs Entra ID (local auth off)
  name: 'scorehook-events-${resourceToken}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: { inputSchema: 'EventGridSchema', publicNetworkAccess: 'Enabled', disableLocalAuth: true }
}

// ---------------------------------------------------------------- Event Hubs (streaming, off by default)
// Entra ID only (local auth off: no SAS keys exist); the app connects with `EventHubs__fullyQualifiedNamespace`.
resource eventHubs 'Microsoft.EventHub/namespaces@2024-01-01' = if (streaming) {
  name: eventHubsNamespace
  location: location
  tags: tags
  sku: { name: 'Standard', tier: 'Standard', capacity: 1 }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: true
    maximumThroughputUnits: 4
    zoneRedundant: true
  }
}

resource hubs 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = [
  for name in streamHubs: if (streaming) {
    parent: eventHubs
    name: name
    properties: { partitionCount: 4, messageRetentionInDays: 1 }
  }
]

// The trigger's own consumer group on the input hub (others may read the same records with theirs).
resource recordsConsumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = if (streaming) {
  parent: hubs[0]
  name: streamConsumerGroup
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109:the platform resolves the app's Key Vault references without VNet integration; access is RBAC only
  // checkov:skip=CKV_AZURE_189:as CKV_AZURE_109: no private endpoint in this template (no VNet)
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    enablePurgeProtection: true
    networkAcls: { defaultAction: 'Allow', bypass: 'AzureServices' }
  }
}

// The HMAC secret shared with the MLflow registry webhook. The preprovision hook generates it once per azd
// environment (WEBHOOK_SECRET); `azd env set WEBHOOK_SECRET ...` + `azd provision` rotates it.
resource webhookSecretValue 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'scorehook-mlflow-webhook-secret'
  properties: {
    value: webhookSecret
    contentType: 'HMAC-SHA256 secret of the MLflow registry webhook'
    attributes: { enabled: true, exp: secretsExpireAt }
  }
}

// ---------------------------------------------------------------- function app (Flex Consumption)
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:zone redundancy is a per-region Flex Consumption option, left off by default
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Event Grid and the MLflow webhook reach the app over its public endpoint
  // checkov:skip=CKV_AZURE_17:Event Grid and MLflow cannot present client certificates; the webhook verifies an HMAC signature
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero per event; there is no fixed instance count
  name: 'func-${resourceToken}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      healthCheckPath: '/api/health'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: { maximumInstanceCount: maximumInstanceCount, instanceMemoryMB: instanceMemoryMB }
      runtime: { name: 'python', version: '3.11' }
    }
  }
}

// Flex Consumption sets the worker runtime and version itself (FUNCTIONS_WORKER_RUNTIME is refused here).
// Applied after the role assignments, so identity-based storage and the Key Vault reference resolve at once.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov:skip=CKV_AZURE_13:false positive: this is the 'appsettings' config resource, not a site configuration (App Service Authentication would also refuse Event Grid and webhook deliveries)
  // checkov:skip=CKV_AZURE_63:false positive: this is the 'appsettings' config resource, not a site configuration
  // checkov:skip=CKV_AZURE_65:false positive: this is the 'appsettings' config resource, not a site configuration
  // checkov:skip=CKV_AZURE_66:false positive: this is the 'appsettings' config resource, not a site configuration
  // checkov:skip=CKV_AZURE_80:false positive: this is the 'appsettings' config resource, not a site configuration (Python app)
  // checkov:skip=CKV_AZURE_88:false positive: this is the 'appsettings' config resource, not a site configuration (Flex Consumption deploys from a blob container, no Azure Files)
  // checkov:skip=CKV_AZURE_222:false positive: this is the 'appsettings' config resource, not a site configuration
  parent: functionApp
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__accountName: hostStorage.name
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
    DataStorage__blobServiceUri: dataStorage.properties.primaryEndpoints.blob
    DataStorage__queueServiceUri: dataStorage.properties.primaryEndpoints.queue
    DataStorage__tableServiceUri: dataStorage.properties.primaryEndpoints.table
    SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS: allowedAccounts
    SCOREHOOK_INPUT_CONTAINER: 'incoming'
    SCOREHOOK_OUTPUT_CONTAINER: 'scored'
    SCOREHOOK_FAILED_CONTAINER: 'failed'
    SCOREHOOK_DEADLETTER_CONTAINER: 'deadletter'
    SCOREHOOK_LEDGER_TABLE: 'ScorehookLedger'
    SCOREHOOK_MODEL_URI: modelUri
    SCOREHOOK_ROUTES: routes
    SCOREHOOK_ALIAS_TTL_SECONDS: '60'
    SCOREHOOK_MODEL_MARKER_CONTAINER: 'scorehook-models'
    SCOREHOOK_MODEL_MARKER_SECONDS: '2'
    SCOREHOOK_ONNX_THREADS: '1'
    SCOREHOOK_MODEL_CACHE_SIZE: '4'
    SCOREHOOK_CLAIM_TTL_SECONDS: '60'
    SCOREHOOK_MAX_FILE_BYTES: '68719476736'
    SCOREHOOK_MAX_RECORD_BYTES: '16777216'
    SCOREHOOK_MAX_INFLATED_BYTES: '274877906944'
    SCOREHOOK_MAX_INFLATION_RATIO: '200'
    SCOREHOOK_MAX_COLUMNS: '2000'
    SCOREHOOK_MLFLOW_TIMEOUT_SECONDS: '10'
    SCOREHOOK_MLFLOW_MAX_RETRIES: '1'
    MLFLOW_TRACKING_URI: mlflowTrackingUri
    SCOREHOOK_PICKLE_REGISTRIES: ''
    SCOREHOOK_MLFLOW_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${webhookSecretValue.properties.secretUri})'
    SCOREHOOK_ALLOWED_WORKSPACES: allowedWorkspaces
    SCOREHOOK_EVALUATION_DATA: evaluationData
    SCOREHOOK_PRIMARY_METRIC: 'auc'
    SCOREHOOK_PROMOTION_MARGIN: '0'
    SCOREHOOK_PROMOTE_HISTORY: '5'
    SCOREHOOK_PROMOTE_MIN_AUC: ''
    SCOREHOOK_PROMOTE_MIN_F1: ''
    SCOREHOOK_PROMOTE_MIN_ACCURACY: ''
    SCOREHOOK_PROMOTE_MAX_RMSE: ''
    SCOREHOOK_PROMOTE_MAX_MAE: ''
    SCOREHOOK_PROMOTE_WINDOW_MIN_ROWS: '200'
    SCOREHOOK_GUARD_METRICS: 'f1'
    SCOREHOOK_REQUIRE_APPROVAL: 'false'
    SCOREHOOK_LATENCY_BUDGET_MS: '250'
    SCOREHOOK_ONLINE_ENDPOINT: onlineEndpoint
    SCOREHOOK_AZUREML_WORKSPACE: azuremlWorkspace
    SCOREHOOK_EVENTS_TOPIC_ENDPOINT: eventsTopic.properties.endpoint
    SCOREHOOK_EVENTS_TOPIC_KEY: '' // empty: publish with the app's identity (the topic has no keys)
    SCOREHOOK_DRIFT_ENABLED: 'true'
    SCOREHOOK_DRIFT_CONTAINER: 'drift'
    SCOREHOOK_DRIFT_WINDOW_SECONDS: '3600'
    SCOREHOOK_DRIFT_NUMERIC_THRESHOLD: '0.1'
    SCOREHOOK_DRIFT_CATEGORICAL_THRESHOLD: '0.1'
    SCOREHOOK_DRIFT_QUALITY_THRESHOLD: '0.05'
    SCOREHOOK_DRIFT_SHARE: '0.2'
    SCOREHOOK_DRIFT_ALPHA: '0.05'
    SCOREHOOK_DRIFT_MIN_ROWS: '50'
    SCOREHOOK_DRIFT_FULL_ALPHA_ROWS: '1000'
    SCOREHOOK_DRIFT_COOLDOWN_SECONDS: '86400'
    SCOREHOOK_DRIFT_LOOKBACK_WINDOWS: '2'
    SCOREHOOK_DRIFT_SCHEDULE: '0 */5 * * * *'
    SCOREHOOK_DRIFT_PART_RETENTION_SECONDS: '3600'
    SCOREHOOK_DRIFT_REFERENCE_DATA: evaluationData
    SCOREHOOK_DRIFT_MONITOR_MODELS: ''
    SCOREHOOK_RETRAIN_LAUNCHER: empty(azuremlWorkspace) ? 'none' : 'azureml'
    SCOREHOOK_RETRAIN_PIPELINE: 'infra/ml/retrain-pipeline.yml'
    // Event Hubs streaming (param streaming): the trigger, its hubs and consumer group; the namespace is also what a
    // route's eventhub_output sends to. Identity-based: the connection "EventHubs" is its fullyQualifiedNamespace.
    SCOREHOOK_STREAM_ENABLED: streaming ? 'true' : 'false'
    SCOREHOOK_STREAM_HUB: streamHubs[0]
    SCOREHOOK_STREAM_OUTPUT_HUB: streamHubs[1]
    SCOREHOOK_STREAM_CONSUMER_GROUP: streaming ? streamConsumerGroup : '$Default'
    SCOREHOOK_STREAM_MODEL_URI: ''
    EventHubs__fullyQualifiedNamespace: streaming ? '${eventHubsNamespace}.servicebus.windows.net' : ''
    SCOREHOOK_LOG_LEVEL: 'INFO'
  }
  dependsOn: [hostRoles, dataRoles, secretsRole, topicSenderRole, telemetryRole, packageContainer, containers, queues, ledgerTable,
    recordsReceiverRole, hubSenderRoles, recordsConsumerGroup, eventHubCheckpoints]
}

// ---------------------------------------------------------------- role assignments
resource hostRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [roles.blobDataOwner, roles.queueDataContributor, roles.tableDataContributor]: {
    name: guid(hostStorage.id, functionApp.id, role)
    scope: hostStorage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: functionApp.identity.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource dataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [roles.blobDataContributor, roles.queueDataContributor, roles.tableDataContributor]: {
    name: guid(dataStorage.id, functionApp.id, role)
    scope: dataStorage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: functionApp.identity.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource secretsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionApp.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource topicSenderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventsTopic.id, functionApp.id, roles.eventGridDataSender)
  scope: eventsTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventGridDataSender)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionApp.id, roles.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// The trigger reads the input hub; the app sends to the predictions and monitoring hubs.
resource recordsReceiverRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (streaming) {
  name: guid(eventHubsNamespace, streamHubs[0], functionApp.id, roles.eventHubsDataReceiver)
  scope: hubs[0]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataReceiver)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource hubSenderRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for i in [1, 2]: if (streaming) {
    name: guid(eventHubsNamespace, streamHubs[i], functionApp.id, roles.eventHubsDataSender)
    scope: hubs[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
      principalId: functionApp.identity.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// The deploying principal sends stream dead letters back to the input hub (`scorehook deadletters --stream --replay`).
resource userRecordsSenderRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (streaming && !empty(principalId)) {
  name: guid(eventHubsNamespace, streamHubs[0], principalId, roles.eventHubsDataSender)
  scope: hubs[0]
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.eventHubsDataSender)
    principalId: principalId
    principalType: principalType
  }
}

// The deploying principal (a user, or CI's service principal: principalType) may upload input files, read
// outputs (`az storage blob ... --auth-mode login`), run `./scorehook trace|deadletters --replay` against the
// data account (ledger table, queues) and rotate the webhook secret.
resource userDataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in (empty(principalId) ? [] : [roles.blobDataContributor, roles.queueDataContributor, roles.tableDataContributor]): {
    name: guid(dataStorage.id, principalId, role)
    scope: dataStorage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: principalId
      principalType: principalType
    }
  }
]

resource userSecretsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(vault.id, principalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: principalId
    principalType: principalType
  }
}

// ---------------------------------------------------------------- Event Grid: blob events → score_blob
// Mirrored locally by devhost/subscriptions.json (same name, filter, retry policy, dead-letter container).
resource blobEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgst-${resourceToken}'
  location: location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: { source: dataStorage.id, topicType: 'Microsoft.Storage.StorageAccounts' }
}

// The system topic's identity writes dead letters (the data account refuses shared keys).
resource deadLetterRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, blobEvents.id, roles.blobDataContributor)
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: blobEvents.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// Needs the deployed score_blob function (Event Grid validates the endpoint): see subscribeFunctions.
resource scoreIncomingBlobs 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeFunctions) {
  parent: blobEvents
  name: 'score-incoming-blobs'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/score_blob'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/incoming/'
    }
    eventDeliverySchema: 'EventGridSchema'
    // Azure retries at 10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, ...: 10 attempts span ~3.8 h, far over
    // the 60 s claim lease (SCOREHOOK_CLAIM_TTL_SECONDS), so a redelivery takes over a crashed instance's file.
    retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
    deadLetterWithResourceIdentity: {
      identity: { type: 'SystemAssigned' }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: { resourceId: dataStorage.id, blobContainerName: 'deadletter' }
      }
    }
  }
  dependsOn: [appSettings, deadLetterRole, containers]
}

// Dead letters of score-incoming-blobs become failure records (on_deadletter). No dead-letter destination of
// its own, so a dead letter never produces another one (see devhost/subscriptions.json).
resource recordDeadLetters 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeFunctions) {
  parent: blobEvents
  name: 'record-dead-letters'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/on_deadletter'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.Storage.BlobCreated']
      subjectBeginsWith: '/blobServices/default/containers/deadletter/'
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
  }
  dependsOn: [appSettings, containers]
}

// Every instance refreshes its alias cache when a model is promoted (see devhost/subscriptions.json).
resource refreshOnPromotion 'Microsoft.EventGrid/topics/eventSubscriptions@2022-06-15' = if (subscribeFunctions) {
  parent: eventsTopic
  name: 'refresh-on-promotion'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionApp.id}/functions/on_model_promoted'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Scorehook.Model.Promoted']
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 5, eventTimeToLiveInMinutes: 60 }
  }
  dependsOn: [appSettings]
}

// ---------------------------------------------------------------- alerts (docs/operate.md, "Alerts worth setting")
var blobEventAlerts = [
  { name: 'dead-letters', metric: 'DeadLetteredCount', threshold: 0, severity: 1, text: 'Event Grid dead-lettered a delivery: see ./scorehook deadletters' }
  { name: 'dropped-events', metric: 'DroppedEventCount', threshold: 0, severity: 1, text: 'Event Grid dropped events (no dead-letter destination)' }
  { name: 'delivery-failures', metric: 'DeliveryAttemptFailCount', threshold: 20, severity: 2, text: 'Many failed deliveries to the functions (they are retried)' }
]

resource opsGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-scorehook-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'scorehook'
    enabled: true
    emailReceivers: [{ name: 'ops', emailAddress: alertEmail, useCommonAlertSchema: true }]
  }
}

resource blobEventMetricAlerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for alert in (empty(alertEmail) ? [] : blobEventAlerts): {
    name: 'scorehook-${alert.name}-${resourceToken}'
    location: 'global'
    tags: tags
    properties: {
      description: alert.text
      severity: alert.severity
      enabled: true
      scopes: [blobEvents.id]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT15M'
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            criterionType: 'StaticThresholdCriterion'
            name: alert.metric
            metricName: alert.metric
            operator: 'GreaterThan'
            threshold: alert.threshold
            timeAggregation: 'Total'
          }
        ]
      }
      actions: [{ actionGroupId: opsGroup.id }]
    }
  }
]

output functionAppName string = functionApp.name
output functionAppId string = functionApp.id
output functionAppPrincipalId string = functionApp.identity.principalId
output functionAppHostName string = functionApp.properties.defaultHostName
output dataStorageAccountId string = dataStorage.id
output vaultName string = vault.name
output dataStorageAccountName string = dataStorage.name
output eventsTopicEndpoint string = eventsTopic.properties.endpoint
