#!/usr/bin/env bash
# Benchmark: the local data plane's sustained throughput and latency. Deploys a twin with
# DEVICES devices (default 100) on a fresh moto with the real function packages, starts the local
# data plane, and runs `deployer verify --messages MESSAGES` (default 20 per device, published as
# one burst); prints per layer the readings that arrived, p50/p95/p99 latency from publish and
# the sustained rate (arrivals per second from the first publish to the last arrival).
#   bash scripts/bench-local.sh
#   DEVICES=10 MESSAGES=100 bash scripts/bench-local.sh
#   INSTANCES=persister=4,processor=3 bash scripts/bench-local.sh   # `local up --instances`
# The figures are for this machine and the emulator (moto answers every DynamoDB and S3 call from
# one Python process); they are not AWS's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${TWIN_VENV:-$root/.venv}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
devices="${DEVICES:-100}"
messages="${MESSAGES:-20}"
for v in "$devices" "$messages"; do
  [[ "$v" =~ ^[1-9][0-9]*$ ]] || { echo "DEVICES and MESSAGES must be whole numbers, got '$v'" >&2; exit 2; }
done

bash scripts/setup.sh
bash scripts/setup-mosquitto.sh
bash scripts/build-functions.sh >/dev/null
cargo build --release -p deployer --bin deployer >&2
deployer="$target_dir/release/deployer"

work="$(mktemp -d)"
moto_pid=""
cleanup() {
  "$deployer" -C "$work/twin" local down >/dev/null 2>&1 || true
  [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

py() { "$venv/bin/python3" "$@"; }
port="$(py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
py - "$port" <<'PY'
import sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
deadline = time.time() + 20
while True:
    try:
        urllib.request.urlopen(base + "/moto-api/data.json", timeout=2); break
    except Exception:
        if time.time() > deadline: raise SystemExit("moto did not start")
        time.sleep(0.2)
urllib.request.urlopen(urllib.request.Request(base + "/moto-api/config",
    data=b'{"lambda":{"use_docker":false}}', method="POST"), timeout=10)
PY
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export DEPLOYER_PREBUILT_FUNCTIONS="$target_dir/lambda"
unset AWS_PROFILE || true

mkdir -p "$work/twin"
py - "$work/twin" "$devices" <<'PY'
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
json.dump({"digital_twin_name": "bench-local", "hot_storage_size_in_days": 30,
           "cold_storage_size_in_days": 90}, open(os.path.join(d, "config.json"), "w"))
json.dump([{"id": f"dev-{i}", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}
           for i in range(n)], open(os.path.join(d, "config_iot_devices.json"), "w"))
json.dump({"layer_1_provider": "aws", "layer_2_provider": "aws", "layer_3_hot_provider": "aws",
           "layer_3_cold_provider": "aws", "layer_3_archive_provider": "aws",
           "layer_4_provider": "none", "layer_5_provider": "none",
           "aws": {"region": "us-east-1", "architecture": "x86_64"}},
          open(os.path.join(d, "config_providers.json"), "w"))
PY

echo "deploying $devices devices on moto..." >&2
"$deployer" -C "$work/twin" -q deploy -y
if [ -n "${INSTANCES:-}" ]; then
  "$deployer" -C "$work/twin" -q local up --instances "$INSTANCES" >/dev/null
else
  "$deployer" -C "$work/twin" -q local up >/dev/null
fi
"$deployer" -C "$work/twin" local status | grep -E 'persister|processor|dispatcher' >&2 || true
echo "verify: $messages readings per device ($((devices * messages)) in all), one burst" >&2
set +e
"$deployer" -C "$work/twin" --json verify --messages "$messages" --timeout 600 >"$work/verify.json"
status=$?
set -e
py - "$work/verify.json" "$devices" "$messages" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
print(f"local data plane, {sys.argv[2]} devices x {sys.argv[3]} readings (verify run {doc['run']})")
print(f"{'layer':<20} {'arrived':>8} {'expected':>9} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'msg/s':>8}")
f = lambda v: "-" if v is None else f"{v:.1f}"
for l in doc["layers"]:
    print(f"{l['layer']:<20} {l['arrived']:>8} {l['expected']:>9} {f(l['p50_ms']):>8} {f(l['p95_ms']):>8} "
          f"{f(l.get('p99_ms')):>8} {f(l.get('per_second')):>8}")
print("ok" if doc["ok"] else "NOT every reading arrived")
PY
exit "$status"
