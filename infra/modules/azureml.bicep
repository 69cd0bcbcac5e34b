// Azure ML wiring, deployed into the workspace's resource group when `azuremlWorkspace` is given: the app's
// role on the workspace, the retraining compute (its identity runs the job), and the workspace's system
// topic with the subscriptions of on_model_registered, on_drift_signal and on_batch_job_event
// (see devhost/subscriptions.json).
param workspaceName string
param tags object
param functionAppId string
param functionAppPrincipalId string
param subscribeFunctions bool
@description('Name of the retraining compute cluster (settings.default_compute of infra/ml/retrain-pipeline.yml).')
param computeName string = 'cpu-cluster'
param computeVmSize string = 'Standard_DS3_v2'
param computeMaxNodes int = 2
@description('experiment_name of infra/ml/retrain-pipeline.yml: only these runs tell how a retraining ended.')
param retrainExperiment string = 'scorehook-retrain'
@description('Experiment of the batch jobs of engine azureml-batch routes (shared/batch_offload.py EXPERIMENT).')
param batchExperiment string = 'scorehook-batch'

var roles = {
  azureMLDataScientist: 'f6c7c914-8db3-469d-8ca1-694a8f32e121'
}

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

// The app submits retraining jobs, reads the workspace's runs and rolls out on its online endpoint.
resource appRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, functionAppId, roles.azureMLDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLDataScientist)
    principalId: functionAppPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The retraining job runs as this cluster's identity (identity: managed in the pipeline YAML).
resource compute 'Microsoft.MachineLearningServices/workspaces/computes@2024-04-01' = {
  parent: workspace
  name: computeName
  location: workspace.location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: {
    computeType: 'AmlCompute'
    disableLocalAuth: true
    properties: {
      vmSize: computeVmSize
      vmPriority: 'Dedicated'
      osType: 'Linux'
      remoteLoginPortPublicAccess: 'Disabled'
      scaleSettings: { minNodeCount: 0, maxNodeCount: computeMaxNodes, nodeIdleTimeBeforeScaleDown: 'PT5M' }
    }
  }
}

// The job registers its model in the workspace and reads its own run.
resource computeRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(workspace.id, compute.id, roles.azureMLDataScientist)
  scope: workspace
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.azureMLDataScientist)
    principalId: compute.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

// A workspace has at most one system topic: a workspace that already has one needs its subscriptions made
// there instead (docs/deploy.md, "Azure ML workspace").
resource workspaceEvents 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgst-${workspaceName}'
  location: workspace.location
  tags: tags
  identity: { type: 'SystemAssigned' }
  properties: { source: workspace.id, topicType: 'Microsoft.MachineLearningServices.Workspaces' }
}

resource modelRegistered 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeFunctions) {
  parent: workspaceEvents
  name: 'azureml-model-registered'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/on_model_registered'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.MachineLearningServices.ModelRegistered']
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
  }
}

// How our retraining jobs end: RunCompleted, or RunStatusChanged to Failed/Canceled, of the retraining
// experiment only (parse_retraining_run in shared/drift/signals.py). No RunStatus filter: advanced filters
// are ANDed and RunCompleted carries no RunStatus, so one would drop every completion.
resource retrainingRuns 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeFunctions) {
  parent: workspaceEvents
  name: 'azureml-retraining-runs'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/on_drift_signal'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.MachineLearningServices.RunCompleted'
        'Microsoft.MachineLearningServices.RunStatusChanged'
      ]
      advancedFilters: [
        { operatorType: 'StringIn', key: 'data.ExperimentName', values: [retrainExperiment] }
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
  }
}

// How the batch jobs of engine azureml-batch routes end (parse_batch_run in shared/batch_offload.py). No
// RunStatus filter: RunCompleted carries none (the handler ignores statuses that are not terminal).
resource batchJobRuns 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeFunctions) {
  parent: workspaceEvents
  name: 'azureml-batch-jobs'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/on_batch_job_event'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.MachineLearningServices.RunCompleted'
        'Microsoft.MachineLearningServices.RunStatusChanged'
      ]
      advancedFilters: [
        { operatorType: 'StringIn', key: 'data.ExperimentName', values: [batchExperiment] }
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
  }
}

// Model monitor breaches (the monitor run's threshold tag, shared/drift/signals.py BREACH_TAG) and legacy
// dataset-drift events.
resource monitorBreaches 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeFunctions) {
  parent: workspaceEvents
  name: 'azureml-monitor-breaches'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/on_drift_signal'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.MachineLearningServices.RunStatusChanged']
      advancedFilters: [
        {
          operatorType: 'StringContains'
          key: 'data.RunTags.azureml_modelmonitor_threshold_breached'
          values: ['has failed due to one or more features violating metric thresholds']
        }
      ]
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
  }
}

resource datasetDrift 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeFunctions) {
  parent: workspaceEvents
  name: 'azureml-dataset-drift'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/on_drift_signal'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: ['Microsoft.MachineLearningServices.DatasetDriftDetected']
    }
    eventDeliverySchema: 'EventGridSchema'
    retryPolicy: { maxDeliveryAttempts: 10, eventTimeToLiveInMinutes: 1440 }
  }
}

output computePrincipalId string = compute.identity.principalId
output computeName string = compute.name
output workspaceName string = workspace.name
