# azd postprovision hook (azure.yaml), Windows twin of postprovision.sh: upload the sample holdout unless
# EVALUATION_DATA names other data or the blob exists; with AZUREML_WORKSPACE, create the retraining
# environment and component (infra/ml/).
$ErrorActionPreference = 'Stop'
Set-Location (Join-Path $PSScriptRoot '../..')

$account = "$env:AZURE_DATA_STORAGE_ACCOUNT_NAME"
if ($account -eq '') { throw 'AZURE_DATA_STORAGE_ACCOUNT_NAME is not set: run azd provision first' }
$evaluation = if ("$env:EVALUATION_DATA" -ne '') { $env:EVALUATION_DATA } else { 'blob://evaluation/holdout.csv' }

if ($evaluation -eq 'blob://evaluation/holdout.csv') {
    $exists = az storage blob exists --auth-mode login --account-name $account -c evaluation -n holdout.csv --query exists -o tsv 2>$null
    if ($exists -eq 'true') {
        Write-Host 'evaluation/holdout.csv exists: kept.'
    } else {
        $python = if (Test-Path '.venv/Scripts/python.exe') { '.venv/Scripts/python.exe' } elseif (Test-Path '.venv/bin/python') { '.venv/bin/python' } else { 'python' }
        $tmp = Join-Path ([System.IO.Path]::GetTempPath()) ("scorehook-" + [guid]::NewGuid())
        New-Item -ItemType Directory -Path $tmp | Out-Null
        try {
            & $python -m training.data --rows 5000 --seed 99 --label --format csv --out (Join-Path $tmp 'holdout.csv') | Out-Null
            if ($LASTEXITCODE -ne 0) { throw 'generating the sample holdout failed' }
            # The deploying principal's Blob Data Contributor role can take a few minutes to apply.
            $uploaded = $false
            foreach ($attempt in 1..10) {
                az storage blob upload --auth-mode login --account-name $account -c evaluation -n holdout.csv -f (Join-Path $tmp 'holdout.csv') --overwrite false --only-show-errors | Out-Null
                if ($LASTEXITCODE -eq 0) { $uploaded = $true; break }
                Start-Sleep -Seconds 30
            }
            if (-not $uploaded) { throw 'uploading the sample holdout failed' }
            Write-Host "Uploaded the sample holdout (5000 labelled rows) to $account/evaluation/holdout.csv."
        } finally {
            Remove-Item -Recurse -Force $tmp
        }
    }
}

if ("$env:AZUREML_WORKSPACE" -ne '') {
    $parts = $env:AZUREML_WORKSPACE.Split('/')
    $sub, $group, $workspace = $parts[2], $parts[4], $parts[8]
    az extension show -n ml 2>$null | Out-Null
    if ($LASTEXITCODE -ne 0) { az extension add -n ml -y --only-show-errors }
    az ml environment create -f infra/ml/environment.yml --subscription $sub -g $group -w $workspace --only-show-errors | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'creating the Azure ML environment failed' }
    az ml component create -f infra/ml/retrain-component.yml --subscription $sub -g $group -w $workspace --only-show-errors | Out-Null
    if ($LASTEXITCODE -ne 0) { Write-Host 'component scorehook_retrain:1 exists: kept (bump its version to change it).' }
    Write-Host "Azure ML: environment scorehook-train and component scorehook_retrain in $workspace."
}
