#!/usr/bin/env bash
# The tiny design pilot of claims v2 (ablations/README.md, "The tiny design, v2"): design seeds, the validation
# split, never the test set or a confirmatory seed. Each run is `python -m pretrain` into runs/pilot/<name>-s<seed>
# (resumed if there), then the dataset's linear protocol (the converged probe); then the baselines of the same
# seeds into runs/pilot/results.csv. Two runs at a time, one thread each. Prints one table at the end.
#
#   bash scripts/pilot_design.sh                 # seeds 100 101
#   SEEDS="100 101 102" bash scripts/pilot_design.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${PILOT_DIR:-runs/pilot}
SEEDS=${SEEDS:-100 101}
mkdir -p "$OUT"
# name and the flags that make it differ from the tiny preset's default MoCo run
CONDITIONS=(
  "default|"
  "m0|--moco-m 0"
  "crop02|--crop-scale-min 0.2"
  "bank_random|--mechanism memory_bank --bank-init random"
  "bank_features|--mechanism memory_bank --bank-init features"
)
one() {  # name seed flags...
  local name=$1 seed=$2; shift 2
  local dir=$OUT/$name-s$seed
  "$PY" -m pretrain --preset tiny --seed "$seed" --eval-split val --threads 1 --fail-loss-frac 1.0 \
    --fail-loss-rise 0.1 --no-progress --output "$dir" --resume "$@" > "$dir.log" 2>&1 || true   # exit 3: not_converged
  OMP_NUM_THREADS=1 "$PY" -m pretrain.lincls "$dir/checkpoint.pth" >> "$dir.log" 2>&1
}
export -f one
export PY OUT
for seed in $SEEDS; do
  for c in "${CONDITIONS[@]}"; do echo "${c%%|*} $seed ${c#*|}"; done
done | xargs -P 2 -L 1 bash -c 'one "$@"' _
first=${SEEDS%% *}
n=$(wc -w <<< "$SEEDS")
MOCOBENCH_RESULTS=$OUT/results.csv "$PY" -m ablations baselines --preset tiny --seeds "$n" --seed-start "$first" \
  --set eval_split=val --set threads=2
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
import pandas as pd
out = Path(sys.argv[1])
rows = []
for d in sorted(p for p in out.iterdir() if p.is_dir()):
    s, lin = json.loads((d / "summary.json").read_text()), json.loads((d / "lincls.json").read_text())
    name, seed = d.name.rsplit("-s", 1)
    rows.append({"condition": name, "seed": int(seed), "status": s["status"], "pretext_acc1": s["pretext_acc1"],
                 "loss": s["loss"], "loss_rise": s.get("loss_rise"), "knn": s["knn_acc"],
                 "probe": lin["lincls_acc1"], "lambda": lin["lambda"], "probe_converged": lin["converged"],
                 "probe_s": lin["seconds"], "train_s": s["wall_s"]})
base = pd.read_csv(out / "results.csv")
for _, b in base.iterrows():
    rows.append({"condition": b["baseline"], "seed": int(b["seed"]), "status": b["status"], "knn": b["knn_acc"],
                 "probe": b["lincls_acc1"]})
print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
EOF
