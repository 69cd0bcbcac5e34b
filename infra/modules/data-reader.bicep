// Read access to the data account for the retraining job's identity (the account refuses shared keys, so
// the job reads the drift report and the recent inputs with Entra ID).
param dataStorageAccountName string
param principalId string

var blobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'

resource dataStorage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataStorageAccountName
}

resource jobDataRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataStorage.id, principalId, blobDataReader)
  scope: dataStorage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataReader)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
