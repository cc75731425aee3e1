#!/usr/bin/env bash
# Builds the function zips (the seven Lambda functions, the example own-processor and event-rule crates and the Azure custom handler, which must stay x86_64: Flex Consumption runs Linux x86_64) in one cargo-lambda invocation:
#   <target dir>/lambda/<name>/bootstrap.zip   (target dir: $CARGO_TARGET_DIR, else ./target)
# Usage: scripts/build-functions.sh [--arm64] [extra cargo-lambda build args...]
# x86_64 by default; --arm64 needs the aarch64-unknown-linux-gnu Rust target installed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${TWIN_VENV:-$root/.venv}"
functions=(dispatcher processor persister hot-reader hot-to-cold-mover cold-to-archive-mover twin-connector azure-handler fahrenheit-processor high-temperature-callback)

if [ ! -x "$venv/bin/cargo-lambda" ]; then
  bash "$root/scripts/setup.sh"
fi
# cargo-lambda finds zig (from the ziglang wheel) through the virtualenv's python.
export PATH="$venv/bin:$PATH"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
packages=()
for f in "${functions[@]}"; do packages+=(-p "$f"); done

cd "$root"
"$venv/bin/cargo-lambda" lambda build --release --output-format zip "${packages[@]}" "$@" >&2

echo "function zips in $target_dir/lambda:" >&2
for f in "${functions[@]}"; do
  zip="$target_dir/lambda/$f/bootstrap.zip"
  if [ ! -f "$zip" ]; then
    echo "missing $zip" >&2
    exit 1
  fi
  printf '%s\t%s bytes\n' "$zip" "$(stat -c %s "$zip")"
done
