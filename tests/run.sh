#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite (README's second command):
# the package with its `dev` extra, and Debian's mosquitto (a real broker for the MQTT tests).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  $sudo apt-get install -y -q mosquitto mosquitto-clients
fi
python3 -m pip install -q -e ".[dev]"
python3 -m pytest -q "$@"
