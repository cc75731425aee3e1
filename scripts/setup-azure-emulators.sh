#!/usr/bin/env bash
# Installs the Azure data-plane emulators the Azure adapter tests run against, idempotently, into
# a project-local directory (default .azure-emulators/, $TWIN_AZURE_EMULATORS overrides it):
#   azurite 3.35.0               — Azure Blob (3.36+ needs Node >= 21; the machines have Node 20)
#   @vercel/cosmosdb-server 1.0.1 — Cosmos DB NoSQL API over HTTPS with a self-signed certificate
# and patches the Cosmos server's partition-key-range id from the number 0 to the string "0":
# azure_data_cosmos deserialises that id as a string and fails on every query otherwise.
# Prints where the two binaries are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${TWIN_AZURE_EMULATORS:-$root/.azure-emulators}"

AZURITE_VERSION="${AZURITE_VERSION:-3.35.0}"
COSMOS_SERVER_VERSION="${COSMOS_SERVER_VERSION:-1.0.1}"

stamp="$dir/.twin-setup-$AZURITE_VERSION-$COSMOS_SERVER_VERSION"
if [ ! -f "$stamp" ]; then
  echo "setup-azure-emulators: installing azurite $AZURITE_VERSION and @vercel/cosmosdb-server $COSMOS_SERVER_VERSION into $dir" >&2
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"twin-azure-emulators","private":true}' >"$dir/package.json"
  npm install --prefix "$dir" --no-audit --no-fund --loglevel=error --save-exact \
    "azurite@$AZURITE_VERSION" "@vercel/cosmosdb-server@$COSMOS_SERVER_VERSION" >&2
fi

collection="$dir/node_modules/@vercel/cosmosdb-server/lib/account/collection.js"
if [ ! -f "$collection" ]; then
  echo "setup-azure-emulators: $collection is missing; the package layout changed" >&2
  exit 1
fi
# Idempotent: after the first run the pattern no longer matches.
sed -i -E 's/id: 0([,}[:space:]])/id: "0"\1/' "$collection"
if ! grep -q 'id: "0"' "$collection"; then
  echo "setup-azure-emulators: could not patch the partition-key-range id in $collection" >&2
  exit 1
fi
touch "$stamp"

azurite="$dir/node_modules/.bin/azurite-blob"
cosmos="$dir/node_modules/.bin/cosmosdb-server"
for bin in "$azurite" "$cosmos"; do
  [ -x "$bin" ] || { echo "setup-azure-emulators: $bin is missing" >&2; exit 1; }
done
echo "azurite-blob: $azurite"
echo "cosmosdb-server: $cosmos"
