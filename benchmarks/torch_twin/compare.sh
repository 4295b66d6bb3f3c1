#!/usr/bin/env bash
# ringgrad vs its PyTorch twin (benchmarks/torch_twin/twin.py) on the same training step: runs our
# benchmark and the twin back to back, alternating which goes first, and prints img/s of each run,
# the ratio ours / torch per run, and the median with the spread (min-max) over the runs.
#
# Usage: benchmarks/torch_twin/compare.sh [--models yolov3-tiny,yolov3,resnet50] [--runs 3]
#          [--threads 2] [--device cpu|cuda] [--amp none|bf16|f16] [--batch N] [--steps N] [--check]
# CPU defaults: batch 4 (yolov3-tiny), 2 (yolov3), 8 (resnet50) at 416 / 416 / 224, f32, 2 threads.
# CUDA: batch 16, --amp none (f32) or f16 (autocast + GradScaler on both sides).
# Time it alone: on a shared machine, `flock /tmp/rg-cpu.lock benchmarks/torch_twin/compare.sh`.
# The twin's Python: $TWIN_PYTHON, else the first of /usr/bin/python3, python3, python that imports
# torch (with a CUDA device for --device cuda); exits 77 (skipped) when none does. --check stops there.
set -uo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD_DIR:-build}
models=yolov3-tiny,yolov3,resnet50 runs=3 threads=2 device=cpu amp=none batch= steps= check=
while [ $# -gt 0 ]; do
  case "$1" in
    --models) models=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --device) device=$2; shift 2 ;;
    --amp) amp=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "compare.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$device:$amp" in
  cpu:none|cpu:bf16|cuda:none|cuda:f16) ;;
  *) echo "compare.sh: --amp $amp is not run on $device (cpu: none|bf16, cuda: none|f16)" >&2; exit 2 ;;
esac

py=""
for c in ${TWIN_PYTHON:-} /usr/bin/python3 python3 python; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import torch' >/dev/null 2>&1; then py=$c; break; fi
done
if [ -z "$py" ]; then
  echo "compare.sh: skipped, no Python with torch found (tried \$TWIN_PYTHON, /usr/bin/python3, python3, python)"
  exit 77
fi
if [ "$device" = cuda ] && ! "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "compare.sh: skipped, $py's torch $("$py" -c 'import torch; print(torch.__version__)') sees no CUDA device"
  exit 77
fi
if [ -n "$check" ]; then
  echo "compare.sh: twin Python $py, torch $("$py" -c 'import torch; print(torch.__version__)')"
  exit 0
fi
export OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
for exe in "$B/benchmarks/bench_yolo_train" "$B/benchmarks/bench_resnet_train"; do
  [ -x "$exe" ] || { echo "compare.sh: $exe not built (cmake --build $B --target bench_yolo_train bench_resnet_train)" >&2; exit 2; }
done

# ours MODEL BATCH STEPS: our img/s for one training step configuration (a number, or empty on failure)
ours() {
  local m=$1 b=$2 s=$3 mode out
  if [ "$m" = resnet50 ]; then
    if [ "$device" = cuda ]; then
      mode=$([ "$amp" = f16 ] && echo f16-amp || echo f32)
      out=$("$B/benchmarks/bench_resnet_train" --gpu-only --gpu-modes "$mode" --batch "$b" --steps "$s" 2>&1)
      awk -v mode="$mode" '$1 == "cuda:0" && $2 == mode { print $5; exit }' <<<"$out"
    else
      [ "$amp" = none ] || { echo "compare.sh: bench_resnet_train has no CPU bf16 row" >&2; return; }
      out=$("$B/benchmarks/bench_resnet_train" --cpu-only --cpu-batch "$b" --cpu-steps "$s" 2>&1)
      awk '$1 == "cpu" && $2 == "f32" { print $5; exit }' <<<"$out"
    fi
  else
    if [ "$device" = cuda ]; then
      mode=$([ "$amp" = f16 ] && echo f16-amp || echo f32)
      out=$("$B/benchmarks/bench_yolo_train" --gpu-only --models "$m" --batch "$b" --steps "$s" \
        --gpu-modes "${mode%-amp}" 2>&1)
    else
      mode=$([ "$amp" = bf16 ] && echo bf16-amp || echo f32)
      out=$("$B/benchmarks/bench_yolo_train" --cpu-only --models "$m" --cpu-batch "$b" --cpu-steps "$s" \
        --cpu-modes "${mode%-amp}" --no-peak --no-breakdown 2>&1)
    fi
    awk -v m="$m" -v mode="$mode" '$1 == m && $3 == mode { print $6; exit }' <<<"$out"
  fi
  [ -n "${COMPARE_VERBOSE:-}" ] && echo "$out" >&2
}

# twin MODEL BATCH STEPS: the twin's img/s
twin() {
  local out
  out=$("$py" benchmarks/torch_twin/twin.py --model "$1" --batch "$2" --steps "$3" --threads "$threads" \
    --device "$device" --amp "$amp" --warmup $([ "$device" = cuda ] && echo 3 || echo 1) 2>&1)
  [ -n "${COMPARE_VERBOSE:-}" ] && echo "$out" >&2
  sed -n 's/.*step_img_s=\([0-9.]*\).*/\1/p' <<<"$out"
}

echo "compare.sh: $device, amp $amp, $threads threads each (OMP_NUM_THREADS, torch.set_num_threads), $runs runs"
echo "  twin: $py, torch $("$py" -c 'import torch; print(torch.__version__)'); ours: $B/benchmarks ($(git rev-parse --short HEAD 2>/dev/null || echo '?'))"
printf '%-12s %5s %4s %-11s %10s %10s %8s\n' model batch run first "ours img/s" "torch img/s" ratio
status=0
IFS=, read -ra list <<<"$models"
for m in "${list[@]}"; do
  if [ "$device" = cuda ]; then b=${batch:-16} s=${steps:-20}
  else
    case "$m" in
      yolov3-tiny) b=${batch:-4} s=${steps:-5} ;;
      resnet50) b=${batch:-8} s=${steps:-3} ;;
      *) b=${batch:-2} s=${steps:-2} ;;
    esac
  fi
  ratios=()
  for ((r = 1; r <= runs; r++)); do
    if ((r % 2)); then first=ours; o=$(ours "$m" "$b" "$s"); t=$(twin "$m" "$b" "$s")
    else first=torch; t=$(twin "$m" "$b" "$s"); o=$(ours "$m" "$b" "$s"); fi
    if [ -z "$o" ] || [ -z "$t" ]; then
      printf '%-12s %5s %4d %-11s %10s %10s %8s\n' "$m" "$b" "$r" "$first" "${o:-error}" "${t:-error}" -
      status=1
      continue
    fi
    ratio=$(awk -v o="$o" -v t="$t" 'BEGIN { printf "%.3f", o / t }')
    ratios+=("$ratio")
    printf '%-12s %5s %4d %-11s %10.2f %10.2f %8s\n' "$m" "$b" "$r" "$first" "$o" "$t" "$ratio"
  done
  if [ ${#ratios[@]} -gt 0 ]; then
    printf '%s\n' "${ratios[@]}" | sort -g | awk -v m="$m" -v b="$b" '{ v[NR] = $1 }
      END { med = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf "=> %s batch %s: ours/torch median %.2fx, spread %.2f-%.2fx over %d runs\n", m, b, med, v[1], v[NR], NR }'
  fi
done
exit $status
