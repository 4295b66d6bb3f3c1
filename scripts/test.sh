#!/usr/bin/env bash
# Sets up, builds everything and runs the whole test suite (labels unit, dist, e2e; gpu tests
# skip themselves without a CUDA device). This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "$@"
ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure --timeout 1800
