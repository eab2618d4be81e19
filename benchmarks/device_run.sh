#!/usr/bin/env bash
# One prepared run on a lent GPU machine (benchmarks/device_run.py; docs/benchmarks.md, "The prepared
# GPU run"). Here, once: `python benchmarks/device_run.py prepare`. There, as the device call's command
# (carry .whl and .device-data):
#   bash benchmarks/device_run.sh run --out "$OUT" --budget-s 360
#   bash benchmarks/device_run.sh run --out "$OUT" --budget-s 360 --study benchmarks/device_study.toml --cells-per-device 4
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" benchmarks/device_run.py "$@"
