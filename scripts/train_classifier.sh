#!/usr/bin/env bash
# The second documented command: sets up, builds the `ringgrad` command line, and trains a ResNet-18
# classifier on the synthetic shapes dataset (generated into data_gen/shapes-classify on the first
# run). The defaults finish in a couple of minutes on 2 CPU cores; extra arguments are passed on to
# `ringgrad train-classifier` and override them, e.g.
#   bash scripts/train_classifier.sh --device cuda:0 --amp f16
#   bash scripts/train_classifier.sh --epochs 30 --resume
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=ringgrad scripts/setup.sh
exec "${BUILD_DIR:-build}/apps/ringgrad" train-classifier \
  --data data_gen/shapes-classify --model resnet18 --small-input --width 16 \
  --epochs 12 --batch-size 32 --optimizer adamw --lr 3e-3 --out runs/classify "$@"
