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
param maximumInstanceCount int = 100
param instanceMemoryMB int = 2048

// Built-in role definition ids.
var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
}
var dataContainers = ['incoming', 'scored', 'failed', 'deadletter', 'drift', 'scorehook-models']
var deploymentContainer = 'app-package-${resourceToken}'
var extraAccounts = map(filter(split(allowedStorageAccounts, ','), a => !empty(trim(a))), a => trim(a))

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
  properties: { Application_Type: 'web', WorkspaceResourceId: logs.id }
}

// ---------------------------------------------------------------- storage
// Functions host storage (AzureWebJobsStorage, identity-based) and the Flex deployment package container.
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
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

// Data storage: input files, outputs, failure records, Event Grid dead letters, the ledger table.
resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
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

resource dataTables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: dataStorage
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: dataTables
  name: 'ScorehookLedger'
}

// ---------------------------------------------------------------- custom topic + its key in Key Vault
resource eventsTopic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: 'scorehook-events-${resourceToken}'
  location: location
  tags: tags
  properties: { inputSchema: 'EventGridSchema', publicNetworkAccess: 'Enabled', disableLocalAuth: false }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

resource topicKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: 'scorehook-events-topic-key'
  properties: { value: eventsTopic.listKeys().key1, contentType: 'Event Grid topic access key' }
}

// The MLflow webhook secret is set in the vault out of band (it is also given to the MLflow webhook).
resource webhookSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: 'scorehook-mlflow-webhook-secret'
}

// ---------------------------------------------------------------- function app (Flex Consumption)
resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: { tier: 'FlexConsumption', name: 'FC1' }
  properties: { reserved: true }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-${resourceToken}'
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: { minTlsVersion: '1.2' }
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
  parent: functionApp
  name: 'appsettings'
  properties: {
    AzureWebJobsStorage__accountName: hostStorage.name
    APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
    DataStorage__blobServiceUri: dataStorage.properties.primaryEndpoints.blob
    DataStorage__queueServiceUri: dataStorage.properties.primaryEndpoints.queue
    DataStorage__tableServiceUri: dataStorage.properties.primaryEndpoints.table
    SCOREHOOK_ALLOWED_STORAGE_ACCOUNTS: join(union([dataStorage.name], extraAccounts), ',')
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
    SCOREHOOK_MLFLOW_WEBHOOK_SECRET: '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${webhookSecret.name})'
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
    SCOREHOOK_EVENTS_TOPIC_KEY: '@Microsoft.KeyVault(SecretUri=${topicKeySecret.properties.secretUri})'
    SCOREHOOK_DRIFT_ENABLED: 'true'
    SCOREHOOK_DRIFT_CONTAINER: 'drift'
    SCOREHOOK_DRIFT_WINDOW_SECONDS: '3600'
    SCOREHOOK_DRIFT_NUMERIC_THRESHOLD: '0.1'
    SCOREHOOK_DRIFT_CATEGORICAL_THRESHOLD: '0.1'
    SCOREHOOK_DRIFT_QUALITY_THRESHOLD: '0.05'
    SCOREHOOK_DRIFT_SHARE: '0.2'
    SCOREHOOK_DRIFT_ALPHA: '0.05'
    SCOREHOOK_DRIFT_MIN_ROWS: '50'
    SCOREHOOK_DRIFT_COOLDOWN_SECONDS: '86400'
    SCOREHOOK_DRIFT_LOOKBACK_WINDOWS: '2'
    SCOREHOOK_DRIFT_SCHEDULE: '0 */5 * * * *'
    SCOREHOOK_DRIFT_PART_RETENTION_SECONDS: '3600'
    SCOREHOOK_DRIFT_REFERENCE_DATA: evaluationData
    SCOREHOOK_DRIFT_MONITOR_MODELS: ''
    SCOREHOOK_RETRAIN_LAUNCHER: empty(azuremlWorkspace) ? 'none' : 'azureml'
    SCOREHOOK_RETRAIN_PIPELINE: 'infra/ml/retrain-pipeline.yml'
    SCOREHOOK_LOG_LEVEL: 'INFO'
  }
  dependsOn: [hostRoles, dataRoles, secretsRole, packageContainer, containers, ledgerTable]
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

// The deploying user may upload input files and read outputs (`az storage blob ... --auth-mode login`).
resource userDataRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(principalId)) {
  name: guid(dataStorage.id, principalId, roles.blobDataContributor)
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: principalId
    principalType: 'User'
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

output functionAppName string = functionApp.name
output dataStorageAccountName string = dataStorage.name
output eventsTopicEndpoint string = eventsTopic.properties.endpoint
