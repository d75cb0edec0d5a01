"""Convert a MoCo pre-training checkpoint to a detectron2 backbone (.pkl).

    python -m transfer.convert CKPT OUT.pkl [--config CONFIG.yaml] [--no-verify]

Same renaming as the official ``detection/convert-pretrain-to-detectron2.py`` of
facebookresearch/moco: the query encoder ``encoder_q`` only (the key encoder and the queue are
dropped), torchvision ResNet names to detectron2's

    conv1 / bn1                -> stem.conv1 / stem.conv1.norm
    layer1..layer4             -> res2..res5
    bnN                        -> convN.norm
    downsample.0 / .1          -> shortcut / shortcut.norm

and the pre-training head ``fc`` (v1 linear or v2 MLP) dropped (the official script keeps it as
``stem.fc.*``, which detectron2 then reports as unused).  Output:
``{"model": {name: numpy array}, "__author__": "MOCO", "matching_heuristics": True}``,
written atomically.

Accepted inputs: mocobench checkpoints (``state_dict`` keys ``encoder_q.*``) and official MoCo
checkpoints (``module.encoder_q.*``).  After writing, the .pkl is loaded into the detection model
of ``--config`` (default: the VOC R50-C4 MoCo config) through detectron2's own
``DetectionCheckpointer``; conversion fails unless every converted tensor is consumed, every
backbone/res5 parameter is loaded from it, and the loaded values equal the checkpoint's.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "pascal_voc_R_50_C4_24k_moco.yaml"
#: torchvision bottleneck ResNets detectron2's R-C4 / R-FPN builders accept
DEPTHS = {"resnet50": 50, "resnet101": 101, "resnet152": 152}
_RESNET_KEY = re.compile(r"^(conv1\.weight|bn1\.\w+|layer[1-4]\.\d+\.\S+|fc\.\S+)$")


class ConvertError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


def load_checkpoint(path: str | os.PathLike) -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise ConvertError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # corrupt / not a torch file
        raise ConvertError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}".splitlines()[0])
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise ConvertError(f"{path}: not a MoCo checkpoint (no 'state_dict' dict)")
    return obj


def query_encoder(obj: dict, path: str = "checkpoint") -> dict:
    """The query encoder's tensors with torchvision names (``module.`` and ``encoder_q.`` stripped)."""
    sd = obj["state_dict"]
    enc = {}
    for k, v in sd.items():
        k2 = k[len("module."):] if k.startswith("module.") else k
        if k2.startswith("encoder_q."):
            enc[k2[len("encoder_q."):]] = v
    if not enc:
        raise ConvertError(f"{path}: no query encoder ('encoder_q.*' or 'module.encoder_q.*' keys) "
                           "in state_dict")
    arch = obj.get("arch") or (obj.get("config") or {}).get("arch")
    if arch is not None and not str(arch).startswith("resnet"):
        raise ConvertError(f"{path}: arch '{arch}' is not a ResNet; detectron2's R-C4/R-FPN need a "
                           "torchvision ResNet encoder")
    bad = sorted(k for k in enc if not _RESNET_KEY.match(k))
    if bad or "conv1.weight" not in enc:
        what = bad[0] if bad else "missing conv1.weight"
        raise ConvertError(f"{path}: query encoder is not a torchvision ResNet (unexpected key: {what})")
    if arch is not None and arch not in DEPTHS:
        raise ConvertError(f"{path}: arch '{arch}' not supported for detection (bottleneck ResNets: "
                           f"{', '.join(DEPTHS)})")
    w = enc["conv1.weight"]
    if tuple(w.shape[1:]) != (3, 7, 7):
        raise ConvertError(f"{path}: stem conv1 is {tuple(w.shape)}, detectron2's stem needs a 7x7 "
                           "conv on 3 RGB channels (no cifar_stem / in_chans != 3 encoders)")
    return enc


def rename(k: str) -> str:
    """torchvision ResNet name -> detectron2 ResNet name (official MoCo converter's rules)."""
    if "layer" not in k:
        k = "stem." + k
    for t in [1, 2, 3, 4]:
        k = k.replace(f"layer{t}", f"res{t + 1}")
    for t in [1, 2, 3]:
        k = k.replace(f"bn{t}", f"conv{t}.norm")
    k = k.replace("downsample.0", "shortcut")
    k = k.replace("downsample.1", "shortcut.norm")
    return k


def convert(obj: dict, path: str = "checkpoint") -> dict:
    """The detectron2 checkpoint dict for a loaded MoCo checkpoint."""
    enc = query_encoder(obj, path)
    model = {}
    for k, v in enc.items():
        if k.startswith("fc."):
            continue  # pre-training head, not part of the backbone
        model[rename(k)] = v.detach().cpu().numpy()
    return {"model": model, "__author__": "MOCO", "matching_heuristics": True}


def write_pkl(res: dict, out: str | os.PathLike) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(res, f)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def verify(pkl_path: str | os.PathLike, config: str | os.PathLike = DEFAULT_CONFIG,
           depth: int = 50) -> dict:
    """Load ``pkl_path`` into the detection model of ``config`` with detectron2's checkpointer.

    Returns ``{"matched": n, "unused": [...], "missing": [...], "mismatched": [...]}`` where
    ``unused`` are converted tensors detectron2 did not consume, ``missing`` are backbone /
    res5 parameters and buffers that it did not load, ``mismatched`` are tensors whose loaded
    value differs from the file.  A good conversion has all three empty.
    """
    from .compat import ensure_detectron2

    ensure_detectron2()
    import logging

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from . import train  # noqa: F401  registers Res5ROIHeadsExtraNorm

    cfg = train.load_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", str(depth)])
    model = build_model(cfg)
    model.eval()
    ckpt = DetectionCheckpointer(model)
    # silence the per-key table detectron2 prints while matching
    lg = logging.getLogger("detectron2.checkpoint.c2_model_loading")
    old = lg.level
    lg.setLevel(logging.WARNING)
    try:
        with open(pkl_path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
        loaded = ckpt._load_file(str(pkl_path))
        incompatible = ckpt._load_model(loaded)
    finally:
        lg.setLevel(old)
    unused = sorted(incompatible.unexpected_keys)
    own = model.state_dict()
    # parameters that must come from the backbone checkpoint: everything under backbone.bottom_up
    # (FPN) or backbone (C4) and roi_heads.res5, except the extra norm after res5 (new layer).
    def is_backbone(k):
        if k.startswith("roi_heads.res5."):
            return not k.startswith("roi_heads.res5.norm.")
        return k.startswith("backbone.") and not re.match(r"backbone\.(fpn_|top_block)", k)
    missing = sorted(k for k in incompatible.missing_keys if is_backbone(k))
    # value check: map every model key back to the converted name by suffix
    model_keys = [k for k in own if is_backbone(k) and not k.endswith("num_batches_tracked")]
    mismatched, matched = [], 0
    for mk in model_keys:
        src = [n for n in data["model"] if mk.endswith("." + n) or mk == n]
        if len(src) != 1:
            missing.append(mk)
            continue
        a = own[mk].detach().cpu().numpy()
        b = np.asarray(data["model"][src[0]])
        if a.shape != b.shape or not np.array_equal(a, b.astype(a.dtype)):
            mismatched.append(mk)
        else:
            matched += 1
    return {"matched": matched, "unused": unused, "missing": sorted(set(missing)),
            "mismatched": mismatched}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m transfer.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt", help="pretrainer checkpoint (run_dir/checkpoint.pth) or official MoCo .pth.tar")
    p.add_argument("out", help="output detectron2 weights (.pkl)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="detection config whose model is used to verify the .pkl")
    p.add_argument("--no-verify", action="store_true", help="skip the detectron2 load check")
    a = p.parse_args(argv)
    try:
        obj = load_checkpoint(a.ckpt)
        res = convert(obj, a.ckpt)
        arch = obj.get("arch") or (obj.get("config") or {}).get("arch")
        if arch is None:  # official checkpoints: infer from the number of res4 blocks
            n4 = len({k.split(".")[1] for k in res["model"] if k.startswith("res4.")})
            arch = {6: "resnet50", 23: "resnet101", 36: "resnet152"}.get(n4)
            if arch is None:
                raise ConvertError(f"{a.ckpt}: cannot tell the ResNet depth ({n4} res4 blocks)")
        write_pkl(res, a.out)
        print(f"wrote {a.out}: {len(res['model'])} tensors ({arch}, query encoder)")
        if not a.no_verify:
            if not Path(a.config).is_file():
                raise ConvertError(f"config not found: {a.config}")
            r = verify(a.out, a.config, DEPTHS[arch])
            problems = [f"{len(r[k])} {k} ({', '.join(r[k][:3])}{', ...' if len(r[k]) > 3 else ''})"
                        for k in ("unused", "missing", "mismatched") if r[k]]
            if problems:
                os.unlink(a.out)
                raise ConvertError(f"detectron2 did not load {a.out} cleanly: " + "; ".join(problems))
            print(f"verified with detectron2: {r['matched']} backbone tensors matched, 0 unused, "
                  "0 missing, 0 mismatched")
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (ImportError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
