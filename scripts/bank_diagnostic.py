"""Memory-bank diagnostic: does the bank's pretext task fail because of a bug (indexing, update) or because of
the scale (few refreshes per entry, a random initial bank, stale positives against fresh negatives)?

It runs the trainer's own data path (pretrain.engine.trainer.Trainer: sampler, loader, batched augmentation, model,
optimizer, per-epoch reseeding) and the real ``MemoryBank.forward``, and records per step, from the logits the
model returns (cosines = logits x tau):

- ``acc1``: pretext top-1 (%), as the trainer computes it; chance is 100 / (K + 1);
- ``cos_pos``: mean q . positive entry; ``cos_fresh`` / ``cos_stale`` / ``cos_never``: mean q . negative entry,
  for negatives updated earlier in this epoch / last updated in an earlier epoch / never updated (the initial
  bank);
- ``above_pos``: mean fraction of the K negatives whose logit beats the positive's (0.5 = chance; > 0.5 = the
  positive ranks below a typical negative: below-chance pretext accuracy), split the same way;
- ``age_pos`` / ``age_neg``: mean steps since the entry's last update (entries never updated count from step 0).

Modes: ``frozen`` (no optimizer step: the encoder is the initial one throughout, so from the second epoch on
every positive holds the image's own feature from the same network under another augmentation; a correct
bank must then give a pretext top-1 far above chance) and ``train`` (the training step of pretrain/engine/trainer.py).

    python scripts/bank_diagnostic.py --modes frozen,train --bank-inits random,features --seed 100 \
        --out /tmp/bank/diag.json

Prints one table row per (mode, bank_init, epoch) and writes the rows (and per-step curves) as JSON to --out.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pretrain.config import load_config  # noqa: E402
from pretrain.engine.trainer import Trainer
from pretrain.models.mechanism import accuracy_t, info_nce  # noqa: E402
from pretrain.runtime.schedule import lr_at  # noqa: E402
from pretrain.runtime.seeding import seed_all  # noqa: E402

COLS = ("mode", "bank_init", "bank_m", "tau", "epoch", "steps", "acc1", "chance", "cos_pos", "cos_fresh",
        "cos_stale", "cos_never", "above_pos", "above_fresh", "above_stale", "frac_fresh", "age_pos", "age_neg",
        "loss")


def run_one(mode: str, bank_init: str, args) -> list[dict]:
    over = {"mechanism": "memory_bank", "moco_k": args.moco_k, "seed": args.seed, "threads": args.threads,
            "epochs": args.epochs, "bank_init": bank_init, "knn_monitor": False}
    if args.moco_t is not None:
        over["moco_t"] = args.moco_t
    if args.subset is not None:
        over["subset"] = args.subset
    if args.precision:
        over["precision"] = args.precision
    if args.bank_m is not None:
        over["bank_m"] = args.bank_m
    if args.max_steps:
        over["max_steps"] = args.max_steps
    cfg = load_config(args.preset, over)
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(cfg, Path(tmp) / "run", progress=False)
    model, dev = tr.model, tr.device
    n = tr.num_images
    last_step = torch.zeros(n, dtype=torch.long)            # global step of the entry's last update (0: never)
    upd_epoch = torch.full((n,), -1, dtype=torch.long)       # epoch of the entry's last update (-1: never)
    drawn = {}
    orig_sample = model.sample_negatives

    def sample():                                            # the real draw, recorded
        ix = orig_sample()
        drawn["neg"] = ix
        return ix
    model.sample_negatives = sample

    rows, gstep, K = [], 0, cfg.moco_k
    for epoch in range(cfg.epochs):
        seed = seed_all(cfg.seed, epoch, 0)
        g = torch.Generator(device=dev).manual_seed(seed)
        for group in tr.optimizer.param_groups:
            group["lr"] = lr_at(cfg, epoch)
        tr.net.train()
        steps = len(tr.sampler) // tr.batch
        if cfg.max_steps:
            steps = min(steps, cfg.max_steps)
        acc = {c: [] for c in COLS[COLS.index("acc1"):]}
        for step, (x, idx) in enumerate(tr.loader(epoch)):
            if step >= steps:
                break
            gstep += 1
            im_q = tr.batched_aug(x.to(dev), g).contiguous(memory_format=tr.memory_format)
            if mode == "frozen":
                with torch.no_grad():
                    logits, labels = model(im_q, None, idx)
            else:
                logits, labels = model(im_q, None, idx)
            loss = info_nce(logits, labels)
            a1 = accuracy_t(logits, labels, (1,))[0].item()
            if mode == "train":
                tr.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                tr.optimizer.step()
            with torch.no_grad():
                cos = logits.detach().float() * cfg.moco_t
                cpos, cneg = cos[:, :1], cos[:, 1:]
                neg = drawn["neg"].cpu()
                ep = upd_epoch[neg]
                fresh, never = ep == epoch, ep == -1
                stale = ~fresh & ~never
                above = (cneg > cpos).float()               # N x K
                acc["acc1"].append(a1)
                acc["chance"].append(100.0 / (K + 1))
                acc["cos_pos"].append(cpos.mean().item())
                for name, m in (("fresh", fresh), ("stale", stale), ("never", never)):
                    if m.any():
                        acc[f"cos_{name}"].append(cneg[:, m].mean().item())
                        if name != "never":
                            acc[f"above_{name}"].append(above[:, m].mean().item())
                acc["above_pos"].append(above.mean().item())
                acc["frac_fresh"].append(fresh.float().mean().item())
                acc["age_pos"].append((gstep - last_step[idx]).float().mean().item())
                acc["age_neg"].append((gstep - last_step[neg]).float().mean().item())
                acc["loss"].append(loss.item())
                last_step[idx] = gstep
                upd_epoch[idx] = epoch
        row = {"mode": mode, "bank_init": bank_init, "bank_m": cfg.bank_m, "tau": cfg.moco_t, "epoch": epoch + 1,
               "steps": steps}
        for c, v in acc.items():
            row[c] = sum(v) / len(v) if v else None
        row["curve_acc1"] = acc["acc1"]
        row["curve_above_pos"] = acc["above_pos"]
        rows.append(row)
        print(fmt(row), flush=True)
    return rows


def fmt(row: dict) -> str:
    out = []
    for c in COLS:
        v = row.get(c)
        out.append(f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v)))
    return " | ".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--modes", default="frozen,train", help="comma list of frozen, train")
    p.add_argument("--bank-inits", default="random", help="comma list of random, features")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--frozen-epochs", type=int, default=3, help="epochs of the frozen mode")
    p.add_argument("--moco-k", type=int, default=4096)
    p.add_argument("--moco-t", type=float, default=None, help="tau (default: the preset's)")
    p.add_argument("--bank-m", type=float, default=None, help="bank momentum (default: the preset's); 0 = "
                   "every entry is its image's last feature (a control: no mixing with older values)")
    p.add_argument("--subset", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--precision", default="", help="fp32 | bf16 (default: the preset's; bf16 without CPU "
                   "support for it is ~8x slower)")
    p.add_argument("--seed", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON file of the rows (its folder is created)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("| " + " | ".join(COLS) + " |")
    rows, t0 = [], time.time()
    for mode in args.modes.split(","):
        for init in args.bank_inits.split(","):
            a = argparse.Namespace(**vars(args))
            if mode == "frozen":
                a.epochs = args.frozen_epochs
            rows += run_one(mode, init, a)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "columns": COLS, "rows": rows, "seconds": time.time() - t0},
                              indent=1))
    print(f"wrote {out} ({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
