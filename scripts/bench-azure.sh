#!/usr/bin/env bash
# Benchmark: an Azure deploy against the fake ARM with realistic provisioning times scaled down
# (IoT Hub 120 s, Cosmos DB 240 s, Function App 60 s, role propagation 60 s; ÷ BENCH_SCALE,
# default 60). Prints the deploy's wall time, the longest dependency chain of those times
# through the deployed specs, and their ratio (goal ≤ 1.2; exit 1 when the median misses it).
#   bash scripts/bench-azure.sh
#   BENCH_SCALE=30 BENCH_RUNS=5 bash scripts/bench-azure.sh
# The fake stands in for ARM (no ARM emulator exists): the figures measure the engine's
# scheduling, not Azure.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
exec cargo run --quiet -p twin-azure --example bench_azure
