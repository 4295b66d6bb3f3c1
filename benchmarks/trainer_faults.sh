#!/usr/bin/env bash
# Fault trials on the real trainer (issue 12, benchmarks/RELIABILITY.md): `ringgrad train-classifier`
# on 2 ranks under `ringgrad launch`. kill -9 of a random rank at a random step with --max-restarts 1
# and --resume auto; SIGTERM to the launcher at a random time, then the same command again. Each
# final checkpoint's tensors are compared byte for byte with an uninterrupted run's.
# usage: benchmarks/trainer_faults.sh [KILL_TRIALS=20] [TERM_TRIALS=10]   (ringgrad from build/apps)
set -u
KILL=${1:-20} TERM_N=${2:-10}
RG=${RINGGRAD:-$(pwd)/build/apps/ringgrad}
W=$(mktemp -d /tmp/rg_trainer_faults.XXXXXX)
trap 'rm -rf "$W"' EXIT
export OMP_NUM_THREADS=1
"$RG" make-data classify --out "$W/data" --classes 3 --train-per-class 20 --val-per-class 4 --size 16 > /dev/null
train() {  # train <out> [extra options]: 3 epochs of 4 steps per rank
  local out=$1; shift
  echo train-classifier --data "$W/data" --no-make-data --small-input --width 8 --epochs 3 --batch-size 8 \
    --optimizer adamw --lr 3e-3 --workers 1 --seed 7 --out "$out" --log-every 1 --save-period-min 0 "$@"
}
# Tensors of two safetensors files that differ in any byte (the header's metadata aside).
same() {
  python3 - "$1" "$2" <<'PY'
import json, struct, sys
def tensors(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    return {k: b[8 + n + v['data_offsets'][0]:8 + n + v['data_offsets'][1]] for k, v in h.items()}
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
d = [k for k in a if a[k] != b.get(k)] + [k for k in b if k not in a]
print(len(d)); sys.exit(0 if not d else 1)
PY
}
"$RG" launch --nproc-per-node 2 --log-dir "$W/logs_ref" -- "$RG" $(train "$W/ref") > "$W/ref.log" 2>&1 || { echo "reference run failed"; cat "$W/ref.log"; exit 1; }
fin=0 eq=0
for i in $(seq 1 "$KILL"); do
  rank=$((RANDOM % 2)) step=$((2 + RANDOM % 10))  # of 12
  rm -rf "$W/k"
  t0=$(date +%s%N)
  RINGGRAD_FAULT="kill@$step:$rank" "$RG" launch --nproc-per-node 2 --max-restarts 1 --log-dir "$W/logs_k" -- \
    "$RG" $(train "$W/k" --resume auto --save-period-steps 1) > "$W/k.log" 2>&1
  code=$? t=$((($(date +%s%N) - t0) / 1000000))
  restarts=$(grep -c "restart 1 of 1" "$W/k.log")
  [ $code = 0 ] && fin=$((fin + 1))
  if [ $code = 0 ] && same "$W/ref/last.safetensors" "$W/k/last.safetensors" > /dev/null; then eq=$((eq + 1)); r=equal; else r=DIFFERENT; fi
  printf "kill trial %2d: rank %d SIGKILL at step %2d: exit %d, restarts %d, %s, %d ms\n" "$i" "$rank" "$step" "$code" "$restarts" "$r" "$t"
done
echo "kill -9: $fin/$KILL finished, $eq/$KILL final weights bitwise equal"
tfin=0 teq=0 lost_max=0
[ "$TERM_N" -gt 0 ] && "$RG" launch --nproc-per-node 2 --log-dir "$W/logs_ref6" -- "$RG" $(train "$W/ref6" --epochs 6) > /dev/null 2>&1
for i in $(seq 1 "$TERM_N"); do
  rm -rf "$W/t" "$W/logs_t"
  "$RG" launch --nproc-per-node 2 --log-dir "$W/logs_t" -- "$RG" $(train "$W/t" --resume auto --epochs 6) > "$W/t.log" 2>&1 &
  pid=$!
  until grep -q "epoch 1/6 \[" "$W/logs_t/rank_0.log" 2>/dev/null; do sleep 0.01; done
  sleep "0.0$((RANDOM % 10))"  # 0-90 ms: the 6 epochs take about 0.5 s
  kill -TERM $pid; wait $pid; code=$?
  saved=$(python3 -c "import json,struct,sys;b=open(sys.argv[1],'rb').read();n=struct.unpack('<Q',b[:8])[0];print(json.loads(json.loads(b[8:8+n])['__metadata__']['trainer'])['global_step'])" "$W/t/last.safetensors")
  done_steps=$(grep -oE "epoch [0-9]+/6 \[[^]]*\] [0-9]+/4" "$W/logs_t/rank_0.log" | sed -E 's#epoch ([0-9]+)/6 .* ([0-9]+)/4#\1 \2#' | awk '{s=($1-1)*4+$2; if(s>m)m=s} END{print m+0}')
  lost=$((done_steps - saved)); [ $lost -gt $lost_max ] && lost_max=$lost
  "$RG" launch --nproc-per-node 2 --log-dir "$W/logs_t2" -- "$RG" $(train "$W/t" --resume auto --epochs 6) > "$W/t2.log" 2>&1
  code2=$?
  [ $code = 75 ] && tfin=$((tfin + 1))
  if [ $code2 = 0 ] && same "$W/ref6/last.safetensors" "$W/t/last.safetensors" > /dev/null; then teq=$((teq + 1)); r=equal; else r=DIFFERENT; fi
  printf "term trial %2d: exit %d, saved step %2d, steps done %2d, lost %d, rerun exit %d, %s\n" "$i" "$code" "$saved" "$done_steps" "$lost" "$code2" "$r"
done
echo "SIGTERM: $tfin/$TERM_N exit 75, lost work at most $lost_max step(s), $teq/$TERM_N reruns bitwise equal"
