#!/usr/bin/env bash
# Prints the functions' benchmark figures (nothing is asserted):
#   processor+persister logic records/s in-process; persister and mover records/s against moto;
#   the release zip size of each function; each bootstrap's cold start to its first runtime-API poll.
# Builds the zips first (scripts/build-functions.sh). Usage: scripts/bench-functions.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="$target_dir"

bash "$root/scripts/build-functions.sh" >/dev/null
lambda_dir="$target_dir/lambda"
# The zips hold the bootstrap binaries the cold start is measured on.
for zip in "$lambda_dir"/*/bootstrap.zip; do
  python3 -m zipfile -e "$zip" "$(dirname "$zip")"
  chmod +x "$(dirname "$zip")/bootstrap"
done

cd "$root"
# The logic figure needs an optimised build; twin-functions has no SDK, so it builds quickly.
cargo run --quiet --release -p twin-functions --example bench_logic
# Against moto the emulator dominates: the debug build the tests already made is used, which
# avoids a second release build of the SDK for the host target.
cargo run --quiet -p twin-functions-aws --example bench_functions -- "$lambda_dir"
