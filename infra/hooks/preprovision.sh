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
    # a workspace's tracking URI (the azureml-mlflow plugin of requirements.txt opens it); the app's identity
    # gets its role on that workspace through AZUREML_WORKSPACE (infra/modules/azureml.bicep)
    workspace="$(printf '%s' "$uri" | sed -n \
      's#^azureml://[A-Za-z0-9.-]*/mlflow/v[12]\.0\(/subscriptions/[^/?]*/resourceGroups/[^/?]*/providers/Microsoft\.MachineLearningServices/workspaces/[^/?]*\)/\{0,1\}\(?.*\)\{0,1\}$#\1#p')"
    if [ -z "$workspace" ]; then
      echo "MLFLOW_TRACKING_URI='$uri' is not a workspace's tracking URI: expected" >&2
      echo "  azureml://REGION.api.azureml.ms/mlflow/v1.0/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.MachineLearningServices/workspaces/WS" >&2
      exit 1
    fi
    given="$(printf '%s' "${AZUREML_WORKSPACE:-}" | tr 'A-Z' 'a-z')"
    if [ "$given" != "$(printf '%s' "$workspace" | tr 'A-Z' 'a-z')" ]; then
      echo "MLFLOW_TRACKING_URI is the tracking URI of workspace $workspace, but AZUREML_WORKSPACE is" >&2
      echo "'${AZUREML_WORKSPACE:-}': the app's identity would have no role on the registry's workspace." >&2
      echo "  azd env set AZUREML_WORKSPACE $workspace" >&2
      exit 1
    fi ;;
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
