#!/usr/bin/env bash
# Demo: deploys the example twin at the repo root (L4/L5 = none) onto a local moto server.
#   bash scripts/demo.sh
# Installs what it needs (scripts/setup.sh), builds the function zips and the deployer, starts
# moto on a free loopback port in the background (PID and port in .deployer/moto.env), runs
# `deployer deploy -y` and `deployer info`, then prints how to destroy and how to stop moto.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${TWIN_VENV:-$root/.venv}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p .deployer

bash scripts/setup.sh
bash scripts/build-functions.sh >/dev/null
cargo build -p deployer --bin deployer >&2
deployer="$target_dir/debug/deployer"

if [ -f .deployer/moto.env ]; then
  # shellcheck disable=SC1091
  . .deployer/moto.env
  if kill -0 "${MOTO_PID:-0}" 2>/dev/null; then
    echo "moto already running (pid $MOTO_PID, port $MOTO_PORT)" >&2
  else
    unset MOTO_PID
  fi
fi
if [ -z "${MOTO_PID:-}" ]; then
  MOTO_PORT="$("$venv/bin/python3" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >.deployer/moto.log 2>&1 &
  MOTO_PID=$!
  # Wait until moto answers (it starts in about a second).
  for _ in $(seq 1 100); do
    if "$venv/bin/python3" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "http://127.0.0.1:$MOTO_PORT/moto-api/data.json" >/dev/null 2>&1; then break; fi
    sleep 0.2
  done
  # Lambda without Docker: moto's simple backend.
  "$venv/bin/python3" -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method=\"POST\"), timeout=10)" \
    "http://127.0.0.1:$MOTO_PORT/moto-api/config" '{"lambda":{"use_docker":false}}' >/dev/null
  cat >.deployer/moto.env <<ENV
MOTO_PID=$MOTO_PID
MOTO_PORT=$MOTO_PORT
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export DEPLOYER_PREBUILT_FUNCTIONS=$target_dir/lambda
ENV
fi
# shellcheck disable=SC1091
. .deployer/moto.env

"$deployer" -C "$root" deploy -y
"$deployer" -C "$root" info

cat <<MSG

The example twin is deployed on moto at $AWS_ENDPOINT_URL (pid $MOTO_PID).
The simulator config is in $root/.deployer/simulator/config.json.

To destroy it:
  (. $root/.deployer/moto.env && $deployer -C $root destroy -y)
To stop moto afterwards:
  kill $MOTO_PID && rm $root/.deployer/moto.env
MSG
