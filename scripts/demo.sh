#!/usr/bin/env bash
# Demo: deploys the example twin at the repo root (L4/L5 = none) onto a local moto server and
# shows data arriving.
#   bash scripts/demo.sh
# Installs what it needs (scripts/setup.sh, scripts/setup-mosquitto.sh), builds the function zips,
# the deployer and the simulator, starts moto on a free loopback port in the background (PID and
# port in .deployer/moto.env), runs `deployer deploy -y`, starts the local data plane
# (`deployer local up`: mosquitto as IoT Core, the topic rule, the real functions, the hot-reader
# API), sends five seconds of simulator traffic, runs `deployer verify` (every layer must report
# every reading), asks the hot reader for a device's records, and prints `deployer info`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${TWIN_VENV:-$root/.venv}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p .deployer

bash scripts/setup.sh
bash scripts/setup-mosquitto.sh
bash scripts/build-functions.sh >/dev/null
cargo build -p deployer --bin deployer -p twin-simulator --bin simulator >&2
deployer="$target_dir/debug/deployer"
simulator="$target_dir/debug/simulator"

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
"$deployer" -C "$root" local up

echo >&2
echo "== five seconds of simulator traffic (2 messages/s per device) ==" >&2
devices="$("$venv/bin/python3" -c 'import json; print(len(json.load(open("config_iot_devices.json"))))')"
"$simulator" -c .deployer/simulator/config.json load --rate "$((devices * 2))" --duration 5s

echo >&2
echo "== deployer verify: readings followed through every layer ==" >&2
"$deployer" -C "$root" verify --messages 5

first_device="$("$venv/bin/python3" -c 'import json; print(json.load(open("config_iot_devices.json"))[0]["id"])')"
echo >&2
echo "== the hot reader's answer for $first_device (newest records stored above) ==" >&2
"$deployer" -C "$root" lambda_invoke hot-reader "{\"iotDeviceId\": \"$first_device\"}" |
  "$venv/bin/python3" -c 'import json, sys
answer = json.load(sys.stdin)
items = answer.get("items", [])
count = answer.get("count", len(items))
newest = json.dumps(items[-1]) if items else None
print(f"{count} record(s) in the hot store; newest: {newest}")'
"$deployer" -C "$root" info

cat <<MSG

The example twin is deployed on moto at $AWS_ENDPOINT_URL (pid $MOTO_PID).
The simulator config is in $root/.deployer/simulator/config.json.

The local data plane runs in the background: \`$deployer -C $root local status\`.
To stop it and destroy the twin:
  (. $root/.deployer/moto.env && $deployer -C $root local down && $deployer -C $root destroy -y)
To stop moto afterwards:
  kill $MOTO_PID && rm $root/.deployer/moto.env
MSG
