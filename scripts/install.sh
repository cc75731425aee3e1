#!/usr/bin/env bash
# Installs `deployer` as one binary that carries the default function packages (the seven Lambda
# functions and the Azure custom handler), so deploying a twin with default processors needs no
# Rust toolchain, cargo-lambda or zig; only a device's own processor crate is built from source.
#   scripts/install.sh [--root DIR] [--arm64] [--debug]
#     --root DIR  install into DIR/bin (default: cargo's, ~/.cargo/bin)
#     --arm64     also embed arm64 Lambda packages (needs the aarch64-unknown-linux-gnu Rust target)
#     --debug     a debug build (faster to build; for tests)
# Steps: scripts/build-functions.sh (x86_64, and arm64 with --arm64), each architecture's zips
# copied aside, then `cargo install --locked --path crates/deployer` with DEPLOYER_EMBED_FUNCTIONS
# (and DEPLOYER_EMBED_FUNCTIONS_ARM64) naming them: crates/deployer/build.rs compiles them in.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

install_args=()
arm64=0
bin="${CARGO_HOME:-$HOME/.cargo}/bin"
while [ $# -gt 0 ]; do
  case "$1" in
    --root)
      # Absolute before the cd below, so a relative DIR means the caller's directory.
      mkdir -p "$2"; dir="$(cd "$2" && pwd)"
      install_args+=(--root "$dir"); bin="$dir/bin"; shift 2 ;;
    --arm64) arm64=1; shift ;;
    --debug) install_args+=(--debug); shift ;;
    *) echo "install.sh: unknown option $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done
cd "$root"

target_dir="${CARGO_TARGET_DIR:-$root/target}"
export CARGO_TARGET_DIR="$target_dir"
# cargo-lambda writes every architecture to <target>/lambda, so each is copied aside.
embed="$target_dir/deployer-embed"
functions=(dispatcher processor persister hot-reader hot-to-cold-mover cold-to-archive-mover twin-connector azure-handler)
stage() {
  rm -rf "$embed/$1"
  for f in "${functions[@]}"; do
    [ "$1" = arm64 ] && [ "$f" = azure-handler ] && continue
    mkdir -p "$embed/$1/$f"
    cp "$target_dir/lambda/$f/bootstrap.zip" "$embed/$1/$f/bootstrap.zip"
  done
}

if [ "$arm64" = 1 ]; then
  bash scripts/build-functions.sh --arm64 >/dev/null
  stage arm64
  export DEPLOYER_EMBED_FUNCTIONS_ARM64="$embed/arm64"
fi
# x86_64 last, so <target>/lambda holds what the tests expect.
bash scripts/build-functions.sh >/dev/null
stage x86_64
export DEPLOYER_EMBED_FUNCTIONS="$embed/x86_64"

cargo install --locked --force --path crates/deployer "${install_args[@]}"
"$bin/deployer" --version
ls -l "$bin/deployer" >&2
