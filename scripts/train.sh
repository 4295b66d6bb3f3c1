#!/usr/bin/env bash
# The main job: sets up, builds the `ringgrad` command line, generates a small shapes detection set,
# trains YOLOv3-tiny on it on the CPU (README "The two commands" gives the time and mAP measured),
# then runs `ringgrad detect` on a few validation images so that the boxes can be looked at.
# Extra arguments go to `ringgrad train-detector` and override the defaults below, e.g.
#   bash scripts/train.sh --device cuda:0 --amp f16 --img 416 --batch-size 64
#   bash scripts/train.sh --epochs 40 --resume
# (the classifier of the previous main job: bash scripts/train_classifier.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=ringgrad scripts/setup.sh
BIN="${BUILD_DIR:-build}/apps/ringgrad"
DATA=data_gen/shapes-detect-small
OUT=runs/detect

# 6 classes of shapes, 1-4 per image, 128-192 px images (re-running keeps the files already there).
"$BIN" make-data detect --out "$DATA" --classes 6 --train 800 --val 200 --min-size 128 --max-size 192 \
  --max-objects 4 --min-object 0.15 --max-object 0.5

"$BIN" train-detector --data "$DATA" --cfg yolov3-tiny.cfg --img 128 \
  --epochs 30 --batch-size 16 --accumulate 1 --optimizer adam --lr 0.003 --warmup-epochs 1 \
  --hyp scripts/hyp.shapes.yaml --out "$OUT" "$@"

# A few validation images through the trained detector: pictures and YOLO txt files.
mkdir -p "$OUT/samples"
cp "$DATA"/images/val/00000[0-7].jpg "$OUT/samples/"
"$BIN" detect --weights "$OUT/best.safetensors" --source "$OUT/samples" --out "$OUT/predict" --save-txt
echo "train.sh: detections drawn in $OUT/predict/*.jpg (boxes as YOLO txt in $OUT/predict/labels/);" \
  "training curves in $OUT/results.png"
