#!/bin/sh
# azd `predeploy` hook of the api service (azure.yaml).
#
# Flex Consumption (default): nothing to do, azd deploys the package itself.
# Elastic Premium: the app runs from a package blob (WEBSITE_RUN_FROM_PACKAGE is its URL, read with the app's
# identity), and Azure refuses azd's zip deploy to such an app (409 "Run-From-Zip is set to a remote URL").
# So this hook deploys instead: it builds the package with the dependencies built for the Functions
# platform (Linux x86_64, CPython 3.11, whatever machine runs it), uploads it to the deployment container
# with your Entra sign-in, restarts the app, syncs its triggers, and then stops azd (exit 3) before its zip
# deploy, saying so. Run it alone, without the stop (exit 0: what CI should run), with:
#     eval "$(azd env get-values)" && CALLKEEPER_DEPLOY_ONLY=1 sh scripts/predeploy_premium.sh
set -eu

plan="${AZURE_FUNCTIONS_HOSTING_PLAN:-FlexConsumption}"
if [ "$plan" != "ElasticPremium" ]; then
  exit 0
fi

for name in AZURE_RESOURCE_GROUP SERVICE_API_NAME AZURE_STORAGE_ACCOUNT_NAME AZURE_STORAGE_DEPLOYMENT_CONTAINER_NAME; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "predeploy: $name is not set: run 'azd provision' first (it writes the outputs into the azd environment)." >&2
    exit 1
  fi
done

python="${PYTHON:-python3}"
blob="${CALLKEEPER_PACKAGE_BLOB:-callkeeper.zip}"
for tool in az python3 "$python"; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "predeploy: '$tool' is needed to build and upload the Elastic Premium package (docs/deploy.md)." >&2
    exit 1
  fi
done

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "predeploy: building $blob (dependencies as Linux x86_64 wheels for CPython 3.11)"
mkdir -p "$work/app/.python_packages/lib/site-packages"
cp -R function_app.py host.json requirements.txt shared "$work/app/"
# `pip install --target` alone builds for the machine it runs on, and several dependencies ship compiled
# code (cryptography, cffi, psutil, charset-normalizer, ...): from Windows or macOS it would package the
# wrong binaries. These flags ask pip for the wheels of the Functions platform (Linux x86_64, CPython 3.11,
# manylinux2014) and refuse to build anything locally (pip install: --platform needs --only-binary=:all:).
# Learn, Python build options: dependencies must be built for the production environment and installed
# in .python_packages/lib/site-packages.
"$python" -m pip install --quiet --target "$work/app/.python_packages/lib/site-packages" \
  --platform manylinux2014_x86_64 --only-binary=:all: --python-version 3.11 --implementation cp \
  -r requirements.txt
find "$work/app" -name __pycache__ -type d -prune -exec rm -rf {} +
(cd "$work/app" && python3 -m zipfile -c "$work/$blob" function_app.py host.json requirements.txt shared .python_packages)

# Upload rights on the deployment container only, for whoever runs this (a role assignment takes a
# minute or two to apply, hence the retries).
me="$(az ad signed-in-user show --query id -o tsv 2>/dev/null || true)"
if [ -n "$me" ]; then
  account_id="$(az storage account show --name "$AZURE_STORAGE_ACCOUNT_NAME" --resource-group "$AZURE_RESOURCE_GROUP" --query id -o tsv)"
  scope="$account_id/blobServices/default/containers/$AZURE_STORAGE_DEPLOYMENT_CONTAINER_NAME"
  az role assignment create --role "Storage Blob Data Contributor" --assignee-object-id "$me" \
    --assignee-principal-type User --scope "$scope" --output none 2>/dev/null || true
fi

echo "predeploy: uploading to $AZURE_STORAGE_ACCOUNT_NAME/$AZURE_STORAGE_DEPLOYMENT_CONTAINER_NAME/$blob"
tries=0
until az storage blob upload --auth-mode login --account-name "$AZURE_STORAGE_ACCOUNT_NAME" \
  --container-name "$AZURE_STORAGE_DEPLOYMENT_CONTAINER_NAME" --name "$blob" --file "$work/$blob" \
  --overwrite --output none; do
  tries=$((tries + 1))
  if [ "$tries" -ge "${CALLKEEPER_UPLOAD_TRIES:-10}" ]; then
    echo "predeploy: the upload was refused; you need Storage Blob Data Contributor on the container (docs/deploy.md)." >&2
    exit 1
  fi
  sleep "${CALLKEEPER_UPLOAD_WAIT:-15}"
done

echo "predeploy: restarting $SERVICE_API_NAME"
az functionapp restart --resource-group "$AZURE_RESOURCE_GROUP" --name "$SERVICE_API_NAME" --output none

# An app that runs from a package URL learns of new or changed functions only when its triggers are synced
# (Learn, "Run your functions from a package file": with WEBSITE_RUN_FROM_PACKAGE=<URL> you must sync
# triggers after publishing an updated package; Learn, deployment technologies, "Trigger syncing": POST
# .../sites/<app>/syncfunctiontriggers). az rest prefixes a resource id with the current cloud's ARM
# endpoint, so this works in the US government clouds too.
echo "predeploy: syncing the triggers of $SERVICE_API_NAME"
site_id="$(az functionapp show --resource-group "$AZURE_RESOURCE_GROUP" --name "$SERVICE_API_NAME" --query id -o tsv)"
az rest --method post --url "$site_id/syncfunctiontriggers?api-version=2024-04-01" --output none

if [ "${CALLKEEPER_DEPLOY_ONLY:-}" = "1" ]; then
  exit 0
fi
echo "predeploy: callkeeper is deployed (package uploaded, app restarted, triggers synced)."
echo "predeploy: stopping azd here on purpose: Azure refuses azd's own zip deploy on Elastic Premium apps that"
echo "predeploy: run from a package URL (409). Nothing failed; see docs/deploy.md, 'National clouds'."
exit 3
