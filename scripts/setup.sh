#!/usr/bin/env bash
# Installs ringgrad's build dependencies from Debian's packages (skipped when already present),
# then configures and builds into ./build. CUDA is used when /usr/local/cuda/bin/nvcc exists.
# Usage: scripts/setup.sh [extra cmake args...]   (env BUILD_DIR, TARGETS, RINGGRAD_CUDA=ON|OFF|AUTO)
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(cmake ninja-build g++ libeigen3-dev doctest-dev ccache libjpeg-dev libpng-dev libstb-dev
      libopenmpi-dev openmpi-bin python3)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRINGGRAD_CUDA="${RINGGRAD_CUDA:-AUTO}" "$@" >/dev/null
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" ${TARGETS:+--target $TARGETS}
