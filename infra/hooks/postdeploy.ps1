# azd postdeploy hook (azure.yaml), Windows twin of postdeploy.sh: the second provision that subscribes the
# deployed functions to Event Grid, a check that the webhook secret's Key Vault reference resolved, and the
# MLflow webhook URL with the command that registers it.
$ErrorActionPreference = 'Stop'

if ("$env:SUBSCRIBE_FUNCTIONS" -ne 'true') {
    Write-Host 'Functions deployed: provisioning again to subscribe them to Event Grid (SUBSCRIBE_FUNCTIONS=true).'
    azd env set SUBSCRIBE_FUNCTIONS true | Out-Null
    azd provision --no-prompt
    if ($LASTEXITCODE -ne 0) { throw 'the second provision failed' }
}

$appId = az functionapp show -g $env:AZURE_RESOURCE_GROUP -n $env:AZURE_FUNCTION_APP_NAME --query id -o tsv
$url = "https://management.azure.com$appId/config/configreferences/appsettings/SCOREHOOK_MLFLOW_WEBHOOK_SECRET?api-version=2023-12-01"
$status = ''
foreach ($attempt in 1..10) {
    $status = az rest --method get --only-show-errors --url $url --query properties.status -o tsv 2>$null
    if ($status -eq 'Resolved') { break }
    Start-Sleep -Seconds 15
}
if ($status -ne 'Resolved') {
    Write-Warning "SCOREHOOK_MLFLOW_WEBHOOK_SECRET: Key Vault reference is '$status', not Resolved: the webhook refuses every delivery until it resolves (az functionapp restart -g $env:AZURE_RESOURCE_GROUP -n $env:AZURE_FUNCTION_APP_NAME)."
}

Write-Host ""
Write-Host "Scorehook is deployed: $env:AZURE_FUNCTION_APP_URL/api/health"
if ("$env:MLFLOW_TRACKING_URI" -like 'azureml://*') {
    Write-Host @"
The registry is the Azure ML workspace of MLFLOW_TRACKING_URI (azureml://, through azureml-mlflow): new model
versions reach on_model_registered through the workspace's ModelRegistered events; no MLflow webhook to
register (the webhook URL, $env:WEBHOOK_URL, serves MLflow servers only).
"@
}
else {
    Write-Host @"
MLflow registry webhook URL: $env:WEBHOOK_URL
Register it on the MLflow server (the secret is WEBHOOK_SECRET of this azd environment):

  python -c "import sys; from mlflow import MlflowClient; c = MlflowClient(sys.argv[1], sys.argv[1]); c.create_webhook(name='scorehook', url=sys.argv[2], secret=sys.argv[3], events=['model_version.created', 'model_version_tag.set'])" "`$(azd env get-value MLFLOW_TRACKING_URI)" "`$(azd env get-value WEBHOOK_URL)" "`$(azd env get-value WEBHOOK_SECRET)"
"@
}
Write-Host ""
Write-Host "Upload a file to score:  az storage blob upload --auth-mode login --account-name $env:AZURE_DATA_STORAGE_ACCOUNT_NAME -c incoming -n demo/a.csv -f a.csv"
