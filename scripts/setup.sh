#!/usr/bin/env bash
# Installs what the demo and the tests need into project-local places, idempotently:
#   .venv/  — moto[server] (the AWS emulator) and cargo-lambda (builds the function zips; brings zig)
# Other emulators have their own scripts (setup-mosquitto.sh, ...), called from test.sh / demo.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TWIN_VENV:-$root/.venv}"

MOTO_VERSION="${MOTO_VERSION:-5.2.5}"
CARGO_LAMBDA_VERSION="${CARGO_LAMBDA_VERSION:-1.9.2}"

if [ ! -x "$venv/bin/python" ]; then
  echo "setup: creating virtualenv $venv" >&2
  python3 -m venv "$venv"
fi
stamp="$venv/.twin-setup-$MOTO_VERSION-$CARGO_LAMBDA_VERSION"
if [ ! -f "$stamp" ]; then
  echo "setup: installing moto[server] $MOTO_VERSION and cargo-lambda $CARGO_LAMBDA_VERSION" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "moto[server]==$MOTO_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION"
  touch "$stamp"
fi
"$venv/bin/moto_server" --help >/dev/null
"$venv/bin/cargo-lambda" lambda --version >/dev/null
