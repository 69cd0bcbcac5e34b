# azd preprovision hook (azure.yaml), Windows twin of preprovision.sh: refuse a provision that would yield an
# app that cannot score, and fill in what only needs choosing once per azd environment.
$ErrorActionPreference = 'Stop'

$uri = "$env:MLFLOW_TRACKING_URI"
if ($uri -eq '') {
    Write-Error "MLFLOW_TRACKING_URI is not set: every event would fail with ConfigurationError. azd env set MLFLOW_TRACKING_URI https://your-mlflow-server (see docs/deploy.md)"
    exit 1
}
if ($uri -like 'azureml://*') {
    # a workspace's tracking URI (the azureml-mlflow plugin of requirements.txt opens it); the app's identity
    # gets its role on that workspace through AZUREML_WORKSPACE (infra/modules/azureml.bicep)
    $form = '^azureml://[A-Za-z0-9.-]+/mlflow/v[12]\.0(/subscriptions/[^/?]+/resourceGroups/[^/?]+/providers/Microsoft\.MachineLearningServices/workspaces/[^/?]+)/?(\?.*)?$'
    if ($uri -cnotmatch $form) {
        Write-Error "MLFLOW_TRACKING_URI='$uri' is not a workspace's tracking URI: expected azureml://REGION.api.azureml.ms/mlflow/v1.0/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/WS"
        exit 1
    }
    $workspace = $Matches[1]
    if ("$env:AZUREML_WORKSPACE" -ne $workspace) {
        Write-Error "MLFLOW_TRACKING_URI is the tracking URI of workspace $workspace, but AZUREML_WORKSPACE is '$env:AZUREML_WORKSPACE': the app's identity would have no role on the registry's workspace. azd env set AZUREML_WORKSPACE $workspace"
        exit 1
    }
}
elseif (-not ($uri -like 'http://*' -or $uri -like 'https://*')) {
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
