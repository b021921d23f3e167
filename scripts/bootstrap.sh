#!/usr/bin/env bash
# Set up everything gpu-fleet's plan and tests need on a fresh Debian/Ubuntu machine:
# promtool (Debian package prometheus) and a virtualenv at .venv with the project and
# its dev extra. Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  # The package starts a Prometheus server; the tests need only promtool.
  $sudo systemctl stop prometheus >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import gpu_fleet.components, pytest, kubernetes_validate" >/dev/null 2>&1 \
   || [ pyproject.toml -nt .venv/.installed ]; then
  # setuptools/wheel too: tests build the project with --no-build-isolation (offline).
  .venv/bin/python -m pip install -q --upgrade pip 'setuptools>=75' wheel
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch .venv/.installed
fi

# checkov pins packaging and pydantic versions that clash with the project's: its own venv.
# The test suite needs it, the offline plan does not (CI's Pulumi jobs set GPU_FLEET_SKIP_CHECKOV=1).
CHECKOV_VERSION=3.3.30
if [ "${GPU_FLEET_SKIP_CHECKOV:-0}" != 1 ] \
   && ! .venv-checkov/bin/checkov --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  python3 -m venv .venv-checkov
  .venv-checkov/bin/python -m pip install -q --upgrade pip
  .venv-checkov/bin/python -m pip install -q "checkov==$CHECKOV_VERSION"
fi
