#!/usr/bin/env bash
# Installs what the simulator's tests need, idempotently: Debian's `mosquitto` broker (with
# `mosquitto_sub`/`mosquitto_pub` from `mosquitto-clients`) and the `openssl` CLI that makes the
# tests' throwaway CA. Nothing is started here: each test starts its own broker with its own config.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || need+=(mosquitto-clients)
command -v openssl >/dev/null 2>&1 || need+=(openssl)

if [ "${#need[@]}" -eq 0 ]; then
  echo "setup-mosquitto: mosquitto, mosquitto-clients and openssl already installed" >&2
else
  if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
  else
    SUDO=
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Only refresh the package lists when apt cannot find the package yet (a fresh image has none).
  if ! apt-cache show "${need[@]}" >/dev/null 2>&1; then
    echo "setup-mosquitto: apt-get update" >&2
    $SUDO apt-get update -qq
  fi
  echo "setup-mosquitto: installing ${need[*]}" >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The package does not start a broker without systemd, which is what the tests want; just check
# that the binary runs.
mosq="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
"$mosq" -h 2>&1 | head -n 1 >&2 || true
[ -x "$mosq" ] || { echo "setup-mosquitto: $mosq is missing after install" >&2; exit 1; }
