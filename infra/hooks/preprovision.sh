#!/bin/sh
# azd preprovision hook (azure.yaml): refuse a provision that would yield an app that cannot score, and fill
# in what only needs choosing once per azd environment. PowerShell twin: preprovision.ps1.
set -eu

uri="${MLFLOW_TRACKING_URI:-}"
case "$uri" in
  http://*|https://*) ;;
  "")
    echo "MLFLOW_TRACKING_URI is not set: every event would fail with ConfigurationError." >&2
    echo "  azd env set MLFLOW_TRACKING_URI https://your-mlflow-server   (see docs/deploy.md)" >&2
    exit 1 ;;
  azureml://*)
    echo "MLFLOW_TRACKING_URI=azureml://... needs the azureml-mlflow plugin, which no release fits the app's" >&2
    echo "pins (mlflow-skinny 3.17.2, azure-storage-blob 12.31.1). Use an http(s) MLflow server (docs/deploy.md)." >&2
    exit 1 ;;
  *)
    echo "MLFLOW_TRACKING_URI must be an http(s) URL of an MLflow server, not '$uri'." >&2
    exit 1 ;;
esac

# The MLflow webhook's HMAC secret: generated once, kept in the azd environment, written to Key Vault by the
# Bicep. Rotate: azd env set WEBHOOK_SECRET "$(openssl rand -hex 32)"; azd provision; re-register the webhook.
# A fresh azd environment of an existing deployment (CI, after `azd env refresh`) reuses the vault's secret.
if [ -z "${WEBHOOK_SECRET:-}" ] && [ -n "${AZURE_KEY_VAULT_NAME:-}" ]; then
  secret="$(az keyvault secret show --vault-name "$AZURE_KEY_VAULT_NAME" -n scorehook-mlflow-webhook-secret \
    --query value -o tsv 2>/dev/null || true)"
  if [ -n "$secret" ]; then
    azd env set WEBHOOK_SECRET "$secret" >/dev/null
    WEBHOOK_SECRET="$secret"
    echo "WEBHOOK_SECRET taken from Key Vault $AZURE_KEY_VAULT_NAME."
  fi
fi
if [ -z "${WEBHOOK_SECRET:-}" ]; then
  secret="$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')"
  azd env set WEBHOOK_SECRET "$secret" >/dev/null
  echo "Generated WEBHOOK_SECRET (kept in the azd environment)."
fi

# Role assignments for the deploying principal need its kind: a person locally, a service principal in CI.
if [ -z "${AZURE_PRINCIPAL_TYPE:-}" ]; then
  kind="$(az account show --query user.type -o tsv 2>/dev/null || echo user)"
  if [ "$kind" = "servicePrincipal" ]; then principal_type=ServicePrincipal; else principal_type=User; fi
  azd env set AZURE_PRINCIPAL_TYPE "$principal_type" >/dev/null
  echo "AZURE_PRINCIPAL_TYPE=$principal_type"
fi
