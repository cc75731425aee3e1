#!/usr/bin/env bash
# Benchmark: deploys and destroys the example twin's layers L1-L3 with 1, 10, 100 and 500
# devices against a local moto server, counting API calls through a counting proxy.
#   bash scripts/bench-aws.sh                      # sizes 1 10 100 500
#   SIZES="1 10" bash scripts/bench-aws.sh
#   SIZES="1000 10000" bash scripts/bench-aws.sh   # large twins: minutes to hours on moto
#   PER_DEVICE=1 bash scripts/bench-aws.sh         # "processor_per_device": true (a function each)
# Prints per size: deploy s, destroy s, API calls of deploy and destroy, calls per device of each,
# deploy ms per device and calls/s. Devices without a processor crate share one processor
# function (unless PER_DEVICE=1), so calls per device approach the per-device L1 resources.
# Function code is a stand-in zip (moto does not run it), so no cargo-lambda build is timed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="${TWIN_VENV:-$root/.venv}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
sizes="${SIZES:-1 10 100 500}"
per_device="${PER_DEVICE:-0}"
for n in $sizes; do
  [[ "$n" =~ ^[1-9][0-9]*$ ]] || { echo "SIZES must be whole numbers of devices, got '$n'" >&2; exit 2; }
done

[ -x "$venv/bin/moto_server" ] || bash scripts/setup.sh
cargo build -p deployer --bin deployer -p twin-aws --bin aws-fault-proxy >&2
deployer="$target_dir/debug/deployer"
proxy_bin="$target_dir/debug/aws-fault-proxy"

work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

py() { "$venv/bin/python3" "$@"; }
free_port() { py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http() { # METHOD URL [BODY]
  py - "$@" <<'PY'
import sys, urllib.request
req = urllib.request.Request(sys.argv[2], method=sys.argv[1], data=(sys.argv[3].encode() if len(sys.argv) > 3 else None),
                             headers={"Content-Type": "application/json"})
print(urllib.request.urlopen(req, timeout=30).read().decode())
PY
}

moto_port="$(free_port)"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$moto_port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  http GET "http://127.0.0.1:$moto_port/moto-api/data.json" >/dev/null 2>&1 && break
  sleep 0.2
done
http POST "http://127.0.0.1:$moto_port/moto-api/config" '{"lambda":{"use_docker":false}}' >/dev/null

proxy_port="$(free_port)"
"$proxy_bin" --upstream "127.0.0.1:$moto_port" --port "$proxy_port" >"$work/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  http GET "http://127.0.0.1:$proxy_port/__proxy/stats" >/dev/null 2>&1 && break
  sleep 0.1
done

# Stand-in function zips.
py - "$work/prebuilt" <<'PY'
import sys, os, zipfile
for c in ["dispatcher", "processor", "persister", "hot-reader", "hot-to-cold-mover", "cold-to-archive-mover", "twin-connector"]:
    d = os.path.join(sys.argv[1], c); os.makedirs(d, exist_ok=True)
    with zipfile.ZipFile(os.path.join(d, "bootstrap.zip"), "w") as z:
        z.writestr("bootstrap", c)
PY

export AWS_ENDPOINT_URL="http://127.0.0.1:$proxy_port"
export AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export DEPLOYER_PREBUILT_FUNCTIONS="$work/prebuilt"
unset AWS_PROFILE || true

calls() { http GET "http://127.0.0.1:$proxy_port/__proxy/stats" | py -c 'import sys,json; print(json.load(sys.stdin)["total"])'; }
now() { date +%s.%N; }

printf '%-8s %10s %10s %12s %12s %10s %10s %12s %10s\n' \
  devices deploy_s destroy_s deploy_calls destroy_calls dep/dev des/dev deploy_ms/dev calls/s
for n in $sizes; do
  dir="$work/twin-$n"
  mkdir -p "$dir"
  py - "$dir" "$n" "$per_device" <<'PY'
import sys, json, os
d, n, per_device = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
json.dump({"digital_twin_name": f"bench{n}", "hot_storage_size_in_days": 30,
           "cold_storage_size_in_days": 90, "mode": "INFO"}, open(os.path.join(d, "config.json"), "w"))
json.dump([{"id": f"sensor-{i}", "properties": [{"name": "temperature", "dataType": "DOUBLE"}]}
           for i in range(n)], open(os.path.join(d, "config_iot_devices.json"), "w"))
json.dump({"layer_1_provider": "aws", "layer_2_provider": "aws", "layer_3_hot_provider": "aws",
           "layer_3_cold_provider": "aws", "layer_3_archive_provider": "aws",
           "layer_4_provider": "none", "layer_5_provider": "none",
           "aws": {"region": "us-east-1", "architecture": "x86_64",
                   "processor_per_device": per_device}},
          open(os.path.join(d, "config_providers.json"), "w"))
PY
  http POST "http://127.0.0.1:$proxy_port/__proxy/reset" >/dev/null
  t0="$(now)"
  "$deployer" -C "$dir" -q deploy -y >"$work/deploy-$n.log" 2>&1 || { echo "deploy of $n devices failed:" >&2; tail -20 "$work/deploy-$n.log" >&2; exit 1; }
  t1="$(now)"
  deploy_calls="$(calls)"
  "$deployer" -C "$dir" -q destroy -y >"$work/destroy-$n.log" 2>&1 || { echo "destroy of $n devices failed:" >&2; tail -20 "$work/destroy-$n.log" >&2; exit 1; }
  t2="$(now)"
  total="$(calls)"
  py -c "
n=$n; d=$t1-$t0; x=$t2-$t1; dc=$deploy_calls; xc=$total-$deploy_calls
print(f'{n:<8} {d:10.1f} {x:10.1f} {dc:>12} {xc:>12} {dc/n:10.1f} {xc/n:10.1f} {1000*d/n:12.1f} {(dc+xc)/(d+x):10.1f}')"
done
