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

@description('MLflow tracking/registry URI (MLFLOW_TRACKING_URI), e.g. the Azure ML workspace MLflow URI.')
param mlflowTrackingUri string = ''

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

@description('Create the Event Grid subscription to score_blob. It needs the deployed function: set true after the first `azd deploy`.')
param subscribeFunctions bool = false

@description('Object id of the deploying user (azd sets AZURE_PRINCIPAL_ID); gets blob data access to the data account.')
param principalId string = ''

var tags = { 'azd-env-name': environmentName }

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
    allowedWorkspaces: allowedWorkspaces
    evaluationData: evaluationData
    onlineEndpoint: onlineEndpoint
    azuremlWorkspace: azuremlWorkspace
    allowedStorageAccounts: allowedStorageAccounts
    subscribeFunctions: subscribeFunctions
    principalId: principalId
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = scorehook.outputs.functionAppName
output AZURE_DATA_STORAGE_ACCOUNT_NAME string = scorehook.outputs.dataStorageAccountName
output AZURE_EVENTS_TOPIC_ENDPOINT string = scorehook.outputs.eventsTopicEndpoint
