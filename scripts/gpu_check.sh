#!/usr/bin/env bash
# GPU checks of the cluster path on one CUDA machine (a few minutes on one H100):
#   tiny (Fashion-MNIST) and a synthetic CIFAR-shaped set on CUDA in fp32 and bf16 + channels_last, kill -9 then
#   --resume, the kNN monitor and `pretrain.knn`, the linear protocol (cached features, and ImageFolder with the
#   official augmented protocol), `pretrain.export`, `torchrun --nproc_per_node 1`, no host sync in the batched
#   augmentation nor in the training loop between two reads of its statistics, `pretrain.bench --compare` of the
#   compiled step (torch.compile default and reduce-overhead) beside the eager step in fp32 / bf16 / fp16 and the
#   official moco/builder.py (when OFFICIAL_MOCO names a facebookresearch/moco checkout) at the tiny, CIFAR demo
#   and ImageNet shapes, one tiny run with the fast step, and the tiny set's wall with runs sharing the card.
#
#   bash scripts/gpu_check.sh [OUT_DIR]        (make gpu-check)
#   env: PYTHON (default python3), FMNIST (folder of the Fashion-MNIST idx files; default: the preset's places),
#        OFFICIAL_MOCO (folder with moco/builder.py), QUICK=1 (fewer epochs), TINY_SET_S (seconds given to the
#        tiny set, default 150), FAST (its runs at a time, default 4), SET_COMPILE (their compile mode, default
#        reduce-overhead), SPEED_ONLY=1 (only the speed checks 8-10:
#        the figures of `pretrain.bench` and the tiny set, sized for 8 minutes on one H100); a smoke test of this
#        script on a CPU:
#        DEVICE=cpu QUICK=1 EXTRA="--subset 2000 --moco-k 1024 --knn-subset 1000" bash scripts/gpu_check.sh
# Prints one PASS/FAIL line per check and writes OUT_DIR/gpu_check.log; exit code = number of failed checks.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-$(mktemp -d)}}
mkdir -p "$OUT"
W=$(mktemp -d)
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
LOG=$OUT/gpu_check.log
DATA=${FMNIST:+--data $FMNIST}
EP=$([ "${QUICK:-0}" = 1 ] && echo 2 || echo 6)
DEV=${DEVICE:-cuda}
EXTRA=${EXTRA:-}
FAILS=0
: > "$LOG"
say() { echo "$*" | tee -a "$LOG"; }
check() {          # check NAME TIMEOUT_S CMD...: run (a command or a function), log its output, PASS/FAIL + time
  local name=$1 limit=$2 rc; shift 2
  local t0=$(date +%s%N)
  echo "== $name: $*" >> "$LOG"
  timeout -k 5 "$limit" bash -c '"$@"' _ "$@" >> "$LOG" 2>&1
  rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  if [ $rc = 0 ]; then say "PASS  $name  ($((ms / 1000)).$(( (ms % 1000) / 100 )) s)"
  else FAILS=$((FAILS + 1)); say "FAIL  $name  (rc $rc after $((ms / 1000)) s, see $LOG)"; fi
}
summary() { "$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); print(' '.join(f'{k}={s.get(k)}' for k in sys.argv[2:]))" "$@"; }

say "# $(date -u +%FT%TZ) $(nvidia-smi -L 2>/dev/null | head -1) | $("$PY" -c 'import torch,sys; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)')"
TINY="--preset tiny $DATA --device $DEV --no-progress --epochs $EP $EXTRA"
export W PY TINY DATA LOG DEV FMNIST=${FMNIST:-}

if [ "${SPEED_ONLY:-0}" != 1 ]; then      # SPEED_ONLY=1: only the speed checks 8-10
# 1. tiny on CUDA, fp32 and bf16 + channels_last (kNN monitor on)
check "tiny fp32 on CUDA ($EP epochs)" 300 "$PY" -m pretrain $TINY --output "$W/tiny_fp32"
check "tiny bf16+channels_last on CUDA ($EP epochs)" 300 "$PY" -m pretrain $TINY --precision bf16 --channels-last \
  --output "$W/tiny_bf16"
for r in tiny_fp32 tiny_bf16; do
  [ -f "$W/$r/summary.json" ] && say "      $r: $(summary "$W/$r/summary.json" status knn_acc loss images_per_s wall_s peak_mem_mb device_name)"
done

# 2. kill -9 during training, then --resume
kill_resume() {
  "$PY" -m pretrain $TINY --epochs 3 --output "$W/kill" &
  local pid=$!
  for _ in $(seq 600); do [ -f "$W/kill/checkpoint.pth" ] && break; sleep 0.2; done
  kill -9 $pid; wait $pid 2>/dev/null
  [ -f "$W/kill/checkpoint.pth" ] && [ ! -f "$W/kill/summary.json" ] || { echo "no checkpoint before the kill"; return 1; }
  echo "killed after $(wc -l < "$W/kill/metrics.jsonl") epoch(s)"
  "$PY" -m pretrain $TINY --epochs 3 --output "$W/kill" --resume || return 1
  "$PY" -c "import json,sys; s=json.load(open(sys.argv[1])); assert s['status']=='done' and s['epochs_done']==3, s; print('resumed to', s['epochs_done'], 'epochs, kNN', s['knn_acc'])" "$W/kill/summary.json"
}
export -f kill_resume
check "kill -9 then --resume on CUDA" 300 kill_resume

# 3. synthetic CIFAR-shaped set with the cifar10 preset (the official demo's recipe), fp32 and bf16
CIFAR="--preset cifar10 --dataset synthetic --subset 8192 --epochs 2 --knn-every 1 --device $DEV --no-progress"
check "cifar10 preset, synthetic 32x32x3, fp32" 240 "$PY" -m pretrain $CIFAR --output "$W/cifar_fp32"
check "cifar10 preset, synthetic 32x32x3, bf16+channels_last" 240 "$PY" -m pretrain $CIFAR --precision bf16 \
  --channels-last --output "$W/cifar_bf16"

# 4. kNN and the linear protocol on the tiny checkpoint; export to the official layout
check "pretrain.knn (checkpoint, CUDA)" 120 "$PY" -m pretrain.knn --preset tiny $DATA --device $DEV \
  --checkpoint "$W/tiny_fp32/checkpoint.pth"
check "pretrain.knn (random init, CUDA)" 120 "$PY" -m pretrain.knn --preset tiny $DATA --device $DEV
check "pretrain.lincls (cached features, CUDA)" 300 "$PY" -m pretrain.lincls "$W/tiny_fp32/checkpoint.pth" --device $DEV
check "pretrain.export" 60 "$PY" -m pretrain.export "$W/tiny_fp32/checkpoint.pth" "$W/export.pth"

# 5. ImageFolder: pretrain with PIL workers, then the official augmented linear protocol
make_folder() {
  "$PY" - "$W/ifolder" <<'EOF'
import sys, random
from pathlib import Path
from PIL import Image
root = Path(sys.argv[1]); random.seed(0)
for split, n in (("train", 48), ("val", 16)):
    for c, col in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        d = root / split / f"n0000000{c}"; d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            jit = tuple(max(0, min(255, v + random.randint(-40, 40))) for v in col)
            Image.new("RGB", (72, 64), jit).save(d / f"{i}.JPEG")
EOF
}
export -f make_folder
check "ImageFolder fixture" 60 make_folder
IF="--preset imagenet --data $W/ifolder --arch resnet18 --width 16 --image-size 64 --batch-size 32 --moco-k 64 \
  --epochs 2 --workers 8 --device $DEV --no-progress"
check "imagefolder pretrain (PIL workers, bf16+channels_last)" 240 "$PY" -m pretrain $IF --precision bf16 \
  --channels-last --knn-monitor --output "$W/if"
check "pretrain.lincls on ImageFolder (augmented protocol, CUDA)" 240 "$PY" -m pretrain.lincls \
  "$W/if/checkpoint.pth" --epochs 3 --schedule 2 --batch-size 16 --device $DEV

# 6. torchrun with one process per GPU
check "torchrun --nproc_per_node 1" 240 "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 -m pretrain \
  --preset tiny $DATA --epochs 1 --device $DEV --no-progress --output "$W/torchrun" $EXTRA

# 7. the batched augmentation makes no host sync
[ "$DEV" = cuda ] && check "batched augmentation: no host sync (torch.cuda.set_sync_debug_mode error)" 60 "$PY" - <<'EOF'
import torch
from pretrain.data.augment import BatchedAugment
x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, device="cuda")
g = torch.Generator(device="cuda").manual_seed(0)
for plus, blur in ((False, True), (True, True), (True, False)):
    aug = BatchedAugment(32, plus, [0.5] * 3, [0.25] * 3, crop_scale=(0.08, 1.0), blur=blur)
    aug(x, g)                                   # warm-up (per-device constants)
    torch.cuda.set_sync_debug_mode("error")
    y = aug(x, g)
    torch.cuda.set_sync_debug_mode(0)
    print("aug_plus", plus, "blur", blur, "ok", tuple(y.shape), y.dtype)
EOF
fi

# 8. the training loop makes no host synchronisation between two reads of the step statistics
no_sync_loop() {
  "$PY" - "$DEV" "${FMNIST:-}" <<'EOF'
import sys, tempfile, torch
from pretrain.config import load_config
from pretrain.engine.trainer import Trainer
over = {"device": sys.argv[1], "max_steps": 60, "epochs": 2}
if sys.argv[2]:
    over["data"] = sys.argv[2]


class Strict(Trainer):
    def read_stats(self, *a, **k):            # the one place of the loop allowed to synchronise
        torch.cuda.set_sync_debug_mode(0)
        super().read_stats(*a, **k)
        torch.cuda.set_sync_debug_mode("error")


for compile_mode in ("off", "reduce-overhead"):
    tr = Strict(load_config("tiny", {**over, "compile": compile_mode}), tempfile.mkdtemp(), progress=False)
    tr.train_epoch(0)                         # warm-up: cudnn.benchmark, compile, CUDA graphs' recording
    torch.cuda.set_sync_debug_mode("error")
    rec = tr.train_epoch(1)
    torch.cuda.set_sync_debug_mode(0)
    print(f"compile {compile_mode}: 60 steps, {rec['images_per_s']:.0f} images/s, no host sync outside the reads")
EOF
}
export -f no_sync_loop
[ "$DEV" = cuda ] && check "training loop: no host sync between statistics reads (sync debug mode error)" 240 \
  no_sync_loop

# 9. speed: the whole step, the variants in turn in one process (median of rounds), beside the official builder
#    (OFFICIAL_MOCO: a facebookresearch/moco checkout; its builder gets the same split-BN encoder, batch and K)
OFF=${OFFICIAL_MOCO:+--official $OFFICIAL_MOCO}
for mode in default reduce-overhead; do
  check "bench tiny, compile $mode --compare $OFF" 200 "$PY" -m pretrain.bench --preset tiny $DATA --device $DEV \
    --compile $mode --compare --steps 30 $OFF $EXTRA
  check "bench cifar10 demo shape (R18, batch 512, K 4096), compile $mode --compare $OFF" 240 "$PY" -m \
    pretrain.bench --preset cifar10 --dataset synthetic --subset 4096 --device $DEV --compile $mode --compare \
    --steps 15 $OFF
done
check "bench ImageNet shape (R50, 224 px, batch 128, K 65536), compile default --compare $OFF" 300 "$PY" -m \
  pretrain.bench --preset imagenet --dataset synthetic --subset 65536 --image-size 224 --batch-size 128 \
  --device $DEV --compile default --compare --steps 10 --rounds 2 $OFF

# 10. one tiny run end to end with the fast step (its summary's images/s), and the tiny set on one GPU: as many of
#     the set's trainings as finish in TINY_SET_S seconds, FAST runs at a time sharing the card (each its own
#     process), into scratch run and results folders; prints the runs done and the projected wall of the set
check "tiny run, compile reduce-overhead ($EP epochs)" 300 "$PY" -m pretrain $TINY --compile reduce-overhead \
  --output "$W/tiny_fast"
[ -f "$W/tiny_fast/summary.json" ] && \
  say "      tiny_fast: $(summary "$W/tiny_fast/summary.json" status knn_acc images_per_s wall_s)"
tiny_set() {
  local t0 rc n planned
  t0=$(date +%s)
  export MOCOBENCH_RESULTS="$W/set/results.csv" MOCOBENCH_RUNS="$W/set/runs" MOCOBENCH_SUBMITIT="$W/set/logs"
  local sets="--set device=$DEV --set compile=${SET_COMPILE:-reduce-overhead} ${FMNIST:+--set data=$FMNIST}"
  planned=$("$PY" -m ablations run all --preset tiny --executor local --dry-run --no-bench $sets 2>&1 \
    | grep -c "todo")
  timeout -s INT "${TINY_SET_S:-150}" "$PY" -m ablations run all --preset tiny --executor local \
    --parallel "${FAST:-4}" $sets
  rc=$?
  n=$(find "$W/set/runs" -name summary.json 2>/dev/null | wc -l)
  echo "tiny set: $n of $planned trainings finished in $(( $(date +%s) - t0 )) s, --parallel ${FAST:-4}"
  [ "$n" -gt 0 ] && echo "tiny set: projected wall of all $planned: $(( ($(date +%s) - t0) * planned / n )) s"
  [ "$n" -gt 0 ] && { [ $rc = 0 ] || [ $rc = 124 ] || [ $rc = 130 ]; }
}
export -f tiny_set
check "tiny set on one GPU (${TINY_SET_S:-150} s, --parallel ${FAST:-4}, compile reduce-overhead)" \
  $(( ${TINY_SET_S:-150} + 90 )) tiny_set
grep -E "^resnet|images/s|^  (fp32|bf16|fp16|official)|tiny set" "$LOG" | grep -v "^==" \
  | tee -a "$OUT/bench.txt" > /dev/null
say "# $FAILS check(s) failed"
exit $FAILS
