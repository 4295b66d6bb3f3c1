#!/usr/bin/env bash
# The main job: sets up, builds the `ringgrad` command line, and trains on generated data.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=ringgrad scripts/setup.sh
exec "${BUILD_DIR:-build}/apps/ringgrad" demo-mlp "$@"
