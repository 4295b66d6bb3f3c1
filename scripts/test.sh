#!/usr/bin/env bash
# Sets up, builds everything and runs the whole test suite (labels unit, dist, e2e; gpu tests
# skip themselves without a CUDA device). This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh "$@"

# Python test oracles (pycocotools and numpy, for the mAP comparison in test_metrics) live in a
# git-ignored virtual environment; the tests find it through RG_TEST_PYTHON. Without PyPI the
# suite goes on and that test reports itself skipped.
venv=.venv-test
has_oracle() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import numpy, pycocotools.cocoeval" 2>/dev/null; }
if ! has_oracle; then
  { python3 -m venv "$venv" &&
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --retries 1 --timeout 20 pycocotools numpy; } ||
    echo "test.sh: could not install pycocotools into $venv (no PyPI?): the pycocotools comparison will be skipped" >&2
fi
if has_oracle; then
  RG_TEST_PYTHON="$PWD/$venv/bin/python"
  export RG_TEST_PYTHON
fi

ctest --test-dir "${BUILD_DIR:-build}" --output-on-failure --timeout 1800

# Every libFuzzer target briefly (fuzz/README.md), in its own clang build (build-fuzz, CPU only): the
# checked-in seeds, crash inputs of the past (regress_*) among them, then 5 s of new inputs each.
# Skipped when clang is missing (the offline kit of Note [Offline kit] has none).
if command -v clang++ >/dev/null; then
  FUZZ_FLAGS=-timeout=10 scripts/fuzz.sh "${RG_CI_FUZZ_SECONDS:-5}"
else
  echo "test.sh: clang++ not found, fuzz targets not run" >&2
fi
