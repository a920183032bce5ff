#!/usr/bin/env bash
# Install everything the test suite needs, then run the whole suite (README's second command):
# the package with its `dev` extra, Debian's mosquitto (a real broker for the MQTT tests), and a C
# compiler with Python's headers (the native kernels in edge/native are built by pip install).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=()
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  packages+=(mosquitto mosquitto-clients)
fi
if ! command -v cc >/dev/null 2>&1; then
  packages+=(gcc libc6-dev)
fi
if ! python3 -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  packages+=(python3-dev)
fi
if [ ${#packages[@]} -gt 0 ]; then
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update -q
  $sudo apt-get install -y -q "${packages[@]}"
fi
python3 -m pip install -q -e ".[dev]"
python3 -m pytest -q "$@"
