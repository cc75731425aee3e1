#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the emulators and tools into project-local
# places, builds the function zips once, then runs every test of the workspace.
# Each test binary runs whole (not one process per test, as nextest would): its tests share one
# moto server.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Where a run's time goes, on stderr (CI keeps the output of a failed run).
phase() { echo "test.sh: $1 at ${SECONDS}s" >&2; }

bash scripts/setup.sh
[ -f scripts/setup-mosquitto.sh ] && bash scripts/setup-mosquitto.sh
# Azurite and the Cosmos DB emulator for twin-functions-azure (idempotent: ~30 s once, then 0 s).
bash scripts/setup-azure-emulators.sh
# The DTDL parser the twin-models tests check the generated models with (once, then 0 s).
bash scripts/setup-dtdl-parser.sh >/dev/null
phase "tools ready"
if [ -f scripts/build-functions.sh ]; then
  # opt-level 1 for the test run only: the same code, less time in the run's longest build
  # (release builds for users keep the profile's opt-level 3). TWIN_FUNCTIONS_OPT_LEVEL=3 to
  # test the packages exactly as released.
  CARGO_PROFILE_RELEASE_OPT_LEVEL="${TWIN_FUNCTIONS_OPT_LEVEL:-1}" bash scripts/build-functions.sh
  phase "function packages built"
  # The test build of `deployer` carries those same zips, as an installed one does
  # (crates/deployer/build.rs; tests/install_moto.rs runs it without a toolchain). Costs the
  # deployer crate's own rebuild when the zips change, no second build of anything.
  export DEPLOYER_EMBED_FUNCTIONS="${CARGO_TARGET_DIR:-$root/target}/lambda"
fi

# Arguments before `--` go to cargo, after it to every test binary (as with `cargo test`).
cargo_args=()
test_args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; test_args=("$@"); break; fi
  cargo_args+=("$1"); shift
done
# One build of every test binary, then two binaries at a time (their time is mostly spent
# waiting on emulators; each starts its own on free ports). TEST_JOBS=1 runs them one by one.
binaries="$(mktemp)"
trap 'rm -f "$binaries"' EXIT
cargo test --workspace --all-targets --no-run --message-format=json-render-diagnostics \
  "${cargo_args[@]}" >"$binaries"
phase "test binaries built"
python3 scripts/run-test-binaries.py -- "${test_args[@]}" <"$binaries"
phase "workspace tests passed"
# Doc tests run separately: --all-targets skips them.
cargo test --workspace --doc "${cargo_args[@]}" -- "${test_args[@]}"
phase "doc tests passed"
