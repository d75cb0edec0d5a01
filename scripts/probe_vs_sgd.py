"""The two linear protocols side by side on the same frozen features: main_lincls.py's SGD (lr 30, 100 epochs,
cached features) and the converged probe (``--protocol logreg``, pretrain/eval/probe.py), with kNN beside them, for
the baselines (raw pixels; the network at random init of ``--seed``) and for each checkpoint given.

    python scripts/probe_vs_sgd.py --preset tiny [--seed 0] [CKPT ...] [--json FILE]

Prints one row per feature set: kNN, SGD top-1, probe top-1, the probe's lambda, L-BFGS iterations, gradient
norm, and the seconds each protocol took (features included). A measurement, not a test.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from pretrain.base.errors import cli  # noqa: E402
from pretrain.config import load_config  # noqa: E402
from pretrain.eval import baselines as B  # noqa: E402
from pretrain.eval import lincls  # noqa: E402
from pretrain.eval.protocol import LinclsConfig  # noqa: E402


def _timed(f, *a, **kw):
    t = time.time()
    r = f(*a, **kw)
    return r, time.time() - t


@cli
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="*")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default="")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = dataclasses.replace(load_config(a.preset), seed=a.seed)
    sgd, probe = LinclsConfig(), LinclsConfig(protocol="logreg")
    rows = []
    for name, knn, lin in (("raw pixels", B.knn_raw_pixels, B.linear_raw_pixels),
                           (f"random init (seed {a.seed})", B.knn_random_init, B.linear_random_init)):
        k = knn(cfg, "cpu")
        (s, ts), (p, tp) = _timed(lin, cfg, sgd), _timed(lin, cfg, probe)
        rows.append({"features": name, "knn": k, "sgd": s["lincls_acc1"], "probe": p["lincls_acc1"],
                     "lambda": p["lambda"], "iterations": p["iterations"], "grad_norm": p["grad_norm"],
                     "sgd_s": ts, "probe_s": tp})
    for ck in a.checkpoints:
        summary = json.loads((Path(ck).parent / "summary.json").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            (s, ts) = _timed(lincls.run, ck, sgd, out=str(Path(tmp) / "sgd.json"), progress=False, device="cpu")
            (p, tp) = _timed(lincls.run, ck, probe, out=str(Path(tmp) / "probe.json"), progress=False,
                             device="cpu")
        rows.append({"features": ck, "knn": summary.get("knn_acc"), "sgd": s["lincls_acc1"],
                     "probe": p["lincls_acc1"], "lambda": p["lambda"], "iterations": p["iterations"],
                     "grad_norm": p["grad_norm"], "sgd_s": ts, "probe_s": tp})
    print(f"{'features':<44} {'kNN':>6} {'SGD':>6} {'probe':>6} {'lambda':>7} {'iter':>5} {'|grad|':>8} "
          f"{'SGD s':>6} {'probe s':>7}")
    for r in rows:
        knn = f"{r['knn']:6.2f}" if r["knn"] is not None else f"{'-':>6}"
        print(f"{r['features'][-44:]:<44} {knn} {r['sgd']:6.2f} {r['probe']:6.2f} {r['lambda']:7.0e} "
              f"{r['iterations']:5d} {r['grad_norm']:8.1e} {r['sgd_s']:6.1f} {r['probe_s']:7.1f}")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
