#!/usr/bin/env bash
# Installs ringgrad's build dependencies from Debian's packages (skipped when already present),
# then configures and builds into ./build. CUDA is used when /usr/local/cuda/bin/nvcc exists.
# Usage: scripts/setup.sh [extra cmake args...]   (env BUILD_DIR, TARGETS, RINGGRAD_CUDA=ON|OFF|AUTO)
#
# Note [Offline kit]
# A machine with no package registry (the lent GPU machine) cannot apt-get. When .devkit/debs holds
# the packages scripts/device_kit.sh downloaded, they are unpacked into .devkit/root (dpkg -x, no
# install) and CMake searches that prefix first; apt is then not called at all, and the tools
# (cmake, ninja, g++, python3) must already be on the PATH. Without .devkit nothing changes.
set -euo pipefail
cd "$(dirname "$0")/.."

cmake_args=()
if compgen -G ".devkit/debs/*.deb" >/dev/null; then
  root="$PWD/.devkit/root"
  if [ ! -f .devkit/root/.unpacked ] || [ -n "$(find .devkit/debs -newer .devkit/root/.unpacked -name '*.deb')" ]; then
    rm -rf .devkit/root && mkdir -p .devkit/root
    for f in .devkit/debs/*.deb; do dpkg -x "$f" .devkit/root; done
    # jpeglib.h includes "jconfig.h", which Debian keeps in the multiarch include folder
    cp .devkit/root/usr/include/*-linux-gnu/jconfig.h .devkit/root/usr/include/ 2>/dev/null || true
    touch .devkit/root/.unpacked
  fi
  echo "setup: offline kit in .devkit (no apt); build dependencies from $root/usr"
  for t in cmake ninja g++ python3; do
    command -v "$t" >/dev/null || { echo "setup: '$t' is not on the PATH and the offline kit does not provide it" >&2; exit 1; }
  done
  cmake_args+=(-DCMAKE_PREFIX_PATH="$root/usr")
else
  pkgs=(cmake ninja-build g++ libeigen3-dev doctest-dev ccache libjpeg-dev libstb-dev
        nlohmann-json3-dev libyaml-cpp-dev libexpat1-dev fonts-dejavu-core
        libopenmpi-dev openmpi-bin python3 python3-venv iproute2
        clang libclang-rt-14-dev)  # clang + its sanitizer/libFuzzer runtimes: scripts/fuzz.sh
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
fi

BUILD_DIR=${BUILD_DIR:-build}
# Only ringgrad's own status lines (CUDA, cuDNN, NCCL, ...) are shown; the full log stays in the file.
mkdir -p "$BUILD_DIR"
if ! cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRINGGRAD_CUDA="${RINGGRAD_CUDA:-AUTO}" \
     ${cmake_args[@]+"${cmake_args[@]}"} "$@" >"$BUILD_DIR/configure.log" 2>&1; then
  cat "$BUILD_DIR/configure.log" >&2
  exit 1
fi
grep -E "^-- ringgrad" "$BUILD_DIR/configure.log" || true
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" ${TARGETS:+--target $TARGETS}
