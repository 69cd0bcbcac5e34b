#!/bin/sh
# azd postdeploy hook (azure.yaml). The Event Grid subscriptions need the deployed functions (Event Grid
# validates an AzureFunction endpoint), so the first deploy is followed by a second provision with
# SUBSCRIBE_FUNCTIONS=true. Then: check that the webhook secret's Key Vault reference resolved, and print the
# MLflow webhook URL with the command that registers it. PowerShell twin: postdeploy.ps1.
set -eu

if [ "${SUBSCRIBE_FUNCTIONS:-false}" != "true" ]; then
  echo "Functions deployed: provisioning again to subscribe them to Event Grid (SUBSCRIBE_FUNCTIONS=true)."
  azd env set SUBSCRIBE_FUNCTIONS true >/dev/null
  azd provision --no-prompt
fi

app_id="$(az functionapp show -g "$AZURE_RESOURCE_GROUP" -n "$AZURE_FUNCTION_APP_NAME" --query id -o tsv)"
status=""
attempt=1
while [ "$attempt" -le 10 ]; do
  status="$(az rest --method get --only-show-errors \
    --url "https://management.azure.com${app_id}/config/configreferences/appsettings/SCOREHOOK_MLFLOW_WEBHOOK_SECRET?api-version=2023-12-01" \
    --query properties.status -o tsv 2>/dev/null || true)"
  [ "$status" = "Resolved" ] && break
  attempt=$((attempt + 1)); sleep 15
done
if [ "$status" != "Resolved" ]; then
  echo "SCOREHOOK_MLFLOW_WEBHOOK_SECRET: Key Vault reference is '$status', not Resolved: the webhook refuses" >&2
  echo "every delivery until it resolves (az functionapp restart -g $AZURE_RESOURCE_GROUP -n $AZURE_FUNCTION_APP_NAME)." >&2
fi

echo
echo "Scorehook is deployed: ${AZURE_FUNCTION_APP_URL:-}/api/health"
case "${MLFLOW_TRACKING_URI:-}" in
  azureml://*)
    cat <<TEXT
The registry is the Azure ML workspace of MLFLOW_TRACKING_URI (azureml://, through azureml-mlflow): new model
versions reach on_model_registered through the workspace's ModelRegistered events; no MLflow webhook to
register (the webhook URL, ${WEBHOOK_URL:-}, serves MLflow servers only).
TEXT
    ;;
  *)
    cat <<TEXT
MLflow registry webhook URL: ${WEBHOOK_URL:-}
Register it on the MLflow server (the secret is WEBHOOK_SECRET of this azd environment):

  python -c "import sys; from mlflow import MlflowClient; c = MlflowClient(sys.argv[1], sys.argv[1]); \\
c.create_webhook(name='scorehook', url=sys.argv[2], secret=sys.argv[3], \\
events=['model_version.created', 'model_version_tag.set'])" \\
    "\$(azd env get-value MLFLOW_TRACKING_URI)" "\$(azd env get-value WEBHOOK_URL)" "\$(azd env get-value WEBHOOK_SECRET)"
TEXT
    ;;
esac
echo
echo "Upload a file to score:  az storage blob upload --auth-mode login --account-name ${AZURE_DATA_STORAGE_ACCOUNT_NAME:-} -c incoming -n demo/a.csv -f a.csv"
