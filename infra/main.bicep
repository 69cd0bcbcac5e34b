// Scorehook in Azure: one resource group holding everything in modules/scorehook.bicep.
// Deployed by azd (`azd up`); see docs/deploy.md. App setting names match shared/settings.py.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; names the resource group and seeds the resource names.')
param environmentName string

@minLength(1)
@description('Azure region (it must offer Flex Consumption).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Model reference scored by default (SCOREHOOK_MODEL_URI).')
param modelUri string = 'models:/scorehook-sample@champion'

@minLength(8)
@description('MLflow tracking/registry URI (MLFLOW_TRACKING_URI): an http(s) MLflow server, or the azureml:// tracking URI of the workspace azuremlWorkspace names. Required: the app scores nothing without a registry. The preprovision hook refuses an empty one and any other form.')
param mlflowTrackingUri string

@description('Comma-separated storage accounts whose events are accepted, in addition to the data account.')
param allowedStorageAccounts string = ''

@description('Scoring routes as JSON (see shared/routes.py); empty: the incoming container with modelUri.')
param routes string = ''

@description('Azure ML workspaces whose ModelRegistered events are accepted (comma-separated names).')
param allowedWorkspaces string = ''

@description('Labelled evaluation data for champion/challenger, e.g. blob://evaluation/holdout.csv.')
param evaluationData string = 'blob://evaluation/holdout.csv'

@description('Azure ML managed online endpoint that serves the champion (empty: no staged rollout).')
param onlineEndpoint string = ''

@description('ARM id of the Azure ML workspace holding that endpoint.')
param azuremlWorkspace string = ''

@description('Create the Event Grid subscriptions to the functions. They need the deployed functions: the postdeploy hook sets it true and provisions again.')
param subscribeFunctions bool = false

@description('Object id of the deploying principal (azd sets AZURE_PRINCIPAL_ID): blob data access to the data account, Secrets Officer on the vault.')
param principalId string = ''

@description('Kind of principalId: User for a person, ServicePrincipal for CI (OIDC).')
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

@secure()
@minLength(32)
@description('HMAC secret of the MLflow registry webhook; generated once by the preprovision hook (WEBHOOK_SECRET).')
param webhookSecret string

@description('Days until the Key Vault secret expires; every provision renews it.')
param secretLifetimeDays int = 365

@description('Deployment time (never set it): the secret expiry counts from here.')
param now string = utcNow()

@description('Event Hubs streaming: a namespace (Entra ID only) with the input, predictions and monitoring hubs, the score_stream trigger on.')
param streaming bool = false

@description('E-mail address that receives the alerts (dead letters, dropped events, failed deliveries); empty: none.')
param alertEmail string = ''

var tags = { 'azd-env-name': environmentName }
// '/subscriptions/S/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/W'; a placeholder
// when none is given keeps the (unused) module scope expression valid.
var withWorkspace = !empty(azuremlWorkspace)
var workspaceParts = split(withWorkspace ? azuremlWorkspace : '/subscriptions/${subscription().subscriptionId}/resourceGroups/none/providers/none/workspaces/none', '/')
var workspaceName = last(workspaceParts)

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module scorehook 'modules/scorehook.bicep' = {
  name: 'scorehook'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: toLower(uniqueString(subscription().id, environmentName, location))
    modelUri: modelUri
    mlflowTrackingUri: mlflowTrackingUri
    routes: routes
    allowedWorkspaces: empty(allowedWorkspaces) && withWorkspace ? workspaceName : allowedWorkspaces
    evaluationData: evaluationData
    onlineEndpoint: onlineEndpoint
    azuremlWorkspace: azuremlWorkspace
    allowedStorageAccounts: allowedStorageAccounts
    subscribeFunctions: subscribeFunctions
    principalId: principalId
    principalType: principalType
    alertEmail: alertEmail
    streaming: streaming
    webhookSecret: webhookSecret
    secretsExpireAt: dateTimeToEpoch(dateTimeAdd(now, 'P${secretLifetimeDays}D'))
  }
}

module azureml 'modules/azureml.bicep' = if (withWorkspace) {
  name: 'scorehook-azureml'
  scope: resourceGroup(workspaceParts[2], workspaceParts[4])
  params: {
    workspaceName: workspaceName
    tags: tags
    functionAppId: scorehook.outputs.functionAppId
    functionAppPrincipalId: scorehook.outputs.functionAppPrincipalId
    subscribeFunctions: subscribeFunctions
  }
}

module jobDataAccess 'modules/data-reader.bicep' = if (withWorkspace) {
  name: 'scorehook-job-data-access'
  scope: rg
  params: {
    dataStorageAccountName: scorehook.outputs.dataStorageAccountName
    principalId: withWorkspace ? azureml.outputs.computePrincipalId : ''
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = scorehook.outputs.functionAppName
output AZURE_DATA_STORAGE_ACCOUNT_NAME string = scorehook.outputs.dataStorageAccountName
output AZURE_EVENTS_TOPIC_ENDPOINT string = scorehook.outputs.eventsTopicEndpoint
output AZURE_KEY_VAULT_NAME string = scorehook.outputs.vaultName
output AZURE_FUNCTION_APP_URL string = 'https://${scorehook.outputs.functionAppHostName}'
output WEBHOOK_URL string = 'https://${scorehook.outputs.functionAppHostName}/api/mlflow-webhook'
// Restored into a fresh azd environment by `azd env refresh` (CI), so the second provision is not repeated.
output SUBSCRIBE_FUNCTIONS bool = subscribeFunctions
output AZUREML_COMPUTE string = withWorkspace ? azureml.outputs.computeName : ''
