#!/bin/sh
# azd postprovision hook (azure.yaml): data and Azure ML assets the Bicep cannot create.
# 1. Upload the sample labelled holdout to evaluation/holdout.csv unless EVALUATION_DATA names other data
#    or the blob exists (champion/challenger and the drift reference read it).
# 2. With AZUREML_WORKSPACE: create the retraining environment and component (infra/ml/).
# PowerShell twin: postprovision.ps1.
set -eu
cd "$(dirname "$0")/../.."

account="${AZURE_DATA_STORAGE_ACCOUNT_NAME:?run azd provision first}"
evaluation="${EVALUATION_DATA:-blob://evaluation/holdout.csv}"

if [ "$evaluation" = "blob://evaluation/holdout.csv" ]; then
  exists="$(az storage blob exists --auth-mode login --account-name "$account" -c evaluation -n holdout.csv \
    --query exists -o tsv 2>/dev/null || echo unknown)"
  if [ "$exists" = "true" ]; then
    echo "evaluation/holdout.csv exists: kept."
  else
    python="python3"
    [ -x .venv/bin/python ] && python=.venv/bin/python
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "$python" -m training.data --rows 5000 --seed 99 --label --format csv --out "$tmp/holdout.csv" >/dev/null
    # The Blob Data Contributor role given to the deploying principal can take a few minutes to apply.
    attempt=1
    until az storage blob upload --auth-mode login --account-name "$account" -c evaluation -n holdout.csv \
        -f "$tmp/holdout.csv" --overwrite false --only-show-errors >/dev/null; do
      [ "$attempt" -ge 10 ] && { echo "uploading the sample holdout failed" >&2; exit 1; }
      attempt=$((attempt + 1)); sleep 30
    done
    echo "Uploaded the sample holdout (5000 labelled rows) to $account/evaluation/holdout.csv."
  fi
fi

if [ -n "${AZUREML_WORKSPACE:-}" ]; then
  # /subscriptions/S/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/W
  sub="$(echo "$AZUREML_WORKSPACE" | cut -d/ -f3)"
  group="$(echo "$AZUREML_WORKSPACE" | cut -d/ -f5)"
  workspace="$(echo "$AZUREML_WORKSPACE" | cut -d/ -f9)"
  az extension show -n ml >/dev/null 2>&1 || az extension add -n ml -y --only-show-errors
  set -- --subscription "$sub" -g "$group" -w "$workspace" --only-show-errors
  az ml environment create -f infra/ml/environment.yml "$@" >/dev/null
  az ml component create -f infra/ml/retrain-component.yml "$@" >/dev/null \
    || echo "component scorehook_retrain:1 exists: kept (bump its version to change it)."
  echo "Azure ML: environment scorehook-train and component scorehook_retrain in $workspace."
fi
