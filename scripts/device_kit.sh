#!/usr/bin/env bash
# Prepares .devkit/: the Debian packages of the build dependencies that a machine without a package
# registry lacks (the lent GPU machine has CUDA, cuDNN/NCCL wheels, cmake, ninja and g++, but no
# apt access). Run it here, where apt works; then carry .devkit with the device tool, where
# scripts/setup.sh unpacks it and builds against it instead of calling apt (Note [Offline kit]).
# Usage: scripts/device_kit.sh   (writes .devkit/debs/*.deb, a few MB)
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libeigen3-dev doctest-dev libstb-dev libjpeg62-turbo-dev libjpeg62-turbo nlohmann-json3-dev
      libyaml-cpp-dev libyaml-cpp0.7 libexpat1-dev libexpat1)
mkdir -p .devkit/debs
cd .devkit/debs
rm -f ./*.deb
apt-get download "${pkgs[@]}" 2>&1 | grep -v "^W: Download is performed unsandboxed" || true
for f in ./*_*.deb; do mv "$f" "${f%%_*}.deb"; done  # plain names: <package>.deb
ls -l
echo "device_kit: $(du -sh . | cut -f1) in .devkit/debs; carry \".devkit\" with the device tool"
