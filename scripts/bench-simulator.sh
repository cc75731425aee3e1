#!/usr/bin/env bash
# Benchmarks the device simulator against a local mosquitto with mutual TLS.
#
# Makes a throwaway CA, a server certificate and one client certificate per device, starts
# mosquitto on a free loopback port (require_certificate true), then runs the simulator's load
# mode twice: at `max` rate (each device keeps its in-flight window full: the sustained capacity)
# and at a fixed target rate (latency when not saturated). Prints msg/s and p50/p95/p99.
#
#   scripts/bench-simulator.sh                 # 100 devices, 10 s per run, target 20000 msg/s
#   DEVICES=50 DURATION=5s RATE=10000 scripts/bench-simulator.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICES="${DEVICES:-100}"
DURATION="${DURATION:-10s}"
RATE="${RATE:-20000}"
# In-flight window per device: AWS IoT's limit for the target-rate run; a smaller one for the
# max-rate run, whose latency is window / per-device throughput (closed loop).
INFLIGHT="${INFLIGHT:-100}"
MAX_INFLIGHT="${MAX_INFLIGHT:-20}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target-simulator}"

"$root/scripts/setup-mosquitto.sh"
if [ -n "${SIMULATOR_BIN:-}" ]; then
  simulator="$SIMULATOR_BIN"
else
  echo "bench: building the simulator (release)" >&2
  cargo build --quiet --release -p twin-simulator --manifest-path "$root/Cargo.toml"
  simulator="$CARGO_TARGET_DIR/release/simulator"
fi

work="$(mktemp -d)"
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null || true; wait "$broker_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

ssl() { openssl "$@" >/dev/null 2>&1; }
echo "bench: making a throwaway CA and $DEVICES device certificates in $work" >&2
mkdir -p "$work/ca" "$work/devices" "$work/sim"
ssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca/ca.key" \
  -out "$work/ca/ca.pem" -days 2 -subj "/CN=Bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
sign() { # key cert cn extensions
  ssl req -new -key "$1" -out "$2.csr" -subj "/CN=$3"
  printf '%b' "$4" > "$2.ext"
  ssl x509 -req -in "$2.csr" -CA "$work/ca/ca.pem" -CAkey "$work/ca/ca.key" -CAcreateserial \
    -out "$2" -days 2 -extfile "$2.ext"
  rm -f "$2.csr" "$2.ext"
}
ssl ecparam -name prime256v1 -genkey -noout -out "$work/ca/server.key"
sign "$work/ca/server.key" "$work/ca/server.pem" localhost \
  'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n'
payloads="["
for i in $(seq 0 $((DEVICES - 1))); do
  d="$work/devices/bench-$i"
  mkdir -p "$d"
  ssl ecparam -name prime256v1 -genkey -noout -out "$d/private.pem.key"
  sign "$d/private.pem.key" "$d/certificate.pem.crt" "bench-$i" \
    'extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n'
  [ "$i" -gt 0 ] && payloads+=","
  payloads+="{\"iotDeviceId\":\"bench-$i\",\"time\":\"\",\"temperature\":21.5,\"pressure\":1013}"
done
echo "${payloads}]" > "$work/sim/payloads.json"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat > "$work/sim/config.json" <<JSON
{"endpoint": "127.0.0.1", "port": $port, "topic": "bench/iot-data",
 "payload_file_path": "payloads.json", "auth_files_path": "../devices",
 "root_ca_cert_path": "../ca/ca.pem"}
JSON
# `user root`: as root mosquitto drops to the mosquitto user, which cannot read these keys.
cat > "$work/mosquitto.conf" <<CONF
user root
persistence false
log_dest stderr
log_type error
log_type warning
allow_anonymous true
set_tcp_nodelay true
max_connections -1
listener $port 127.0.0.1
cafile $work/ca/ca.pem
certfile $work/ca/server.pem
keyfile $work/ca/server.key
require_certificate true
CONF
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
"$mosquitto_bin" -c "$work/mosquitto.conf" 2>"$work/mosquitto.log" &
broker_pid=$!

# Wait until the broker accepts connections: poll with backoff, give up after 15 s.
delay_ms=10
deadline=$((SECONDS + 15))
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
  if ! kill -0 "$broker_pid" 2>/dev/null; then
    echo "bench: mosquitto exited: $(cat "$work/mosquitto.log")" >&2; exit 1
  fi
  if [ "$SECONDS" -ge "$deadline" ]; then
    echo "bench: mosquitto not accepting on port $port after 15 s" >&2; exit 1
  fi
  sleep "$((delay_ms / 1000)).$(printf '%03d' $((delay_ms % 1000)))"
  delay_ms=$((delay_ms * 2 > 500 ? 500 : delay_ms * 2))
done

summary() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
label, r = sys.argv[1], json.loads(sys.argv[2])
l = r.get("latency_ms") or {}
print(f"{label:<28} {r['throughput_msgs_per_s']:>9.0f} msg/s sustained   "
      f"p50 {l.get('p50', 0):.2f} ms  p95 {l.get('p95', 0):.2f} ms  p99 {l.get('p99', 0):.2f} ms   "
      f"acked {r['acknowledged']}/{r['generated']}, failed {r['failed']}")
PY
}

broker_ticks() { awk '{print $14 + $15}' "/proc/$broker_pid/stat"; }

run() { # label rate inflight
  echo "bench: $DEVICES devices, rate $2, in-flight window $3, $DURATION" >&2
  local before after user sys wall
  before="$(broker_ticks)"
  TIMEFORMAT='%U %S %R'
  { time "$simulator" -c "$work/sim/config.json" load --devices "$DEVICES" --rate "$2" \
      --duration "$DURATION" --inflight "$3" --json > "$work/out.json" 2> "$work/err.txt"; } \
    2> "$work/time" || true
  after="$(broker_ticks)"
  if ! summary "$1" "$(cat "$work/out.json")"; then
    echo "bench: the run failed: $(cat "$work/err.txt")" >&2; return 1
  fi
  read -r user sys wall < "$work/time"
  python3 -c "print(f'    CPU: simulator {($user + $sys) / $wall * 100:.0f}%, mosquitto \\
{($after - $before) / $(getconf CLK_TCK) / $wall * 100:.0f}% of one core (over {$wall:.1f} s wall)')"
}

echo "simulator benchmark: $DEVICES devices (one TLS connection and certificate each), QoS 1, local mosquitto, $(nproc) cores"
run "max rate (capacity)" max "$MAX_INFLIGHT"
run "target $RATE msg/s" "$RATE" "$INFLIGHT"
