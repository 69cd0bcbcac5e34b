# azd preprovision hook (azure.yaml), Windows twin of preprovision.sh: refuse a provision that would yield an
# app that cannot score, and fill in what only needs choosing once per azd environment.
$ErrorActionPreference = 'Stop'

$uri = "$env:MLFLOW_TRACKING_URI"
if ($uri -eq '') {
    Write-Error "MLFLOW_TRACKING_URI is not set: every event would fail with ConfigurationError. azd env set MLFLOW_TRACKING_URI https://your-mlflow-server (see docs/deploy.md)"
    exit 1
}
if ($uri -like 'azureml://*') {
    Write-Error "MLFLOW_TRACKING_URI=azureml://... needs the azureml-mlflow plugin, which no release fits the app's pins (mlflow-skinny 3.17.2, azure-storage-blob 12.31.1). Use an http(s) MLflow server (docs/deploy.md)."
    exit 1
}
if (-not ($uri -like 'http://*' -or $uri -like 'https://*')) {
    Write-Error "MLFLOW_TRACKING_URI must be an http(s) URL of an MLflow server, not '$uri'."
    exit 1
}

# A fresh azd environment of an existing deployment (CI, after `azd env refresh`) reuses the vault's secret.
if ("$env:WEBHOOK_SECRET" -eq '' -and "$env:AZURE_KEY_VAULT_NAME" -ne '') {
    $secret = az keyvault secret show --vault-name $env:AZURE_KEY_VAULT_NAME -n scorehook-mlflow-webhook-secret --query value -o tsv 2>$null
    if ("$secret" -ne '') {
        azd env set WEBHOOK_SECRET $secret | Out-Null
        $env:WEBHOOK_SECRET = $secret
        Write-Host "WEBHOOK_SECRET taken from Key Vault $env:AZURE_KEY_VAULT_NAME."
    }
}
if ("$env:WEBHOOK_SECRET" -eq '') {
    $bytes = [byte[]]::new(32)
    [System.Security.Cryptography.RandomNumberGenerator]::Fill($bytes)
    $secret = -join ($bytes | ForEach-Object { $_.ToString('x2') })
    azd env set WEBHOOK_SECRET $secret | Out-Null
    Write-Host 'Generated WEBHOOK_SECRET (kept in the azd environment).'
}

if ("$env:AZURE_PRINCIPAL_TYPE" -eq '') {
    $kind = az account show --query user.type -o tsv 2>$null
    $principalType = if ($kind -eq 'servicePrincipal') { 'ServicePrincipal' } else { 'User' }
    azd env set AZURE_PRINCIPAL_TYPE $principalType | Out-Null
    Write-Host "AZURE_PRINCIPAL_TYPE=$principalType"
}
