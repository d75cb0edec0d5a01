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
checkpoints (``module.encoder_q.*``); the ResNet is the checkpoint's ``arch`` or, without one,
recognised from the weights (``transfer.arch.infer_arch``).  The .pkl is written to a temporary
file beside OUT.pkl and loaded into the detection model of ``--config`` (default: the VOC R50-C4
MoCo config) through detectron2's own ``DetectionCheckpointer``; only if every converted tensor is
consumed, every backbone/res5 parameter is loaded from it and the loaded values equal the
checkpoint's does it replace OUT.pkl (``os.replace``).  Otherwise OUT.pkl is left as it was, the
temporary file is removed, and the reason is one ``error:`` line (exit code 2).
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import sys
from pathlib import Path

import numpy as np

from pretrain.base.errors import UserError, cli, report
from pretrain.base.fileio import atomic_path, refuse_overwrite
from pretrain.runtime.checkpoint import load, query_encoder_state

from .arch import DEPTHS, ArchError, declared_arch, infer_arch
from .compat import ensure_detectron2
from .d2config import load_cfg

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "pascal_voc_R_50_C4_24k_moco.yaml"
_RESNET_KEY = re.compile(r"^(conv1\.weight|bn1\.\w+|layer[1-4]\.\d+\.\S+|fc\.\S+)$")


class ConvertError(UserError):
    """Bad input to the converter: reported as one line on stderr, exit code 2."""


def load_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint at ``path`` through the suite's one reader (``pretrain.runtime.checkpoint.load``: tensors and
    plain data only, so a file made to run code when unpickled is refused, not run); its problems are
    :class:`ConvertError`."""
    try:
        return load(path)
    except UserError as e:
        raise ConvertError(str(e)) from None


def query_encoder(obj: dict, path: str = "checkpoint") -> dict:
    """The query encoder's tensors with torchvision names (``module.`` and ``encoder_q.`` stripped)."""
    try:
        enc = query_encoder_state(obj, path)
    except UserError as e:
        raise ConvertError(str(e)) from None
    arch = declared_arch(obj)
    if arch is not None and not arch.startswith("resnet"):
        raise ConvertError(f"{path}: arch '{arch}' is not a ResNet; detectron2's R-C4/R-FPN need a "
                           "torchvision ResNet encoder")
    bad = sorted(k for k in enc if not _RESNET_KEY.match(k))
    if bad or "conv1.weight" not in enc:
        what = bad[0] if bad else "missing conv1.weight"
        raise ConvertError(f"{path}: query encoder is not a torchvision ResNet (unexpected key: {what})")
    try:  # declared or, without 'arch', recognised from the weights (transfer.arch, shared with train)
        found = infer_arch(enc, obj, path)
    except ArchError as e:
        raise ConvertError(str(e))
    if found not in DEPTHS:
        how = "" if arch is not None else " (no 'arch' in the checkpoint; recognised from its weights)"
        raise ConvertError(f"{path}: arch '{found}'{how} not supported for detection (bottleneck "
                           f"ResNets: {', '.join(DEPTHS)})")
    w = enc["conv1.weight"]
    if tuple(w.shape[1:]) != (3, 7, 7):
        raise ConvertError(f"{path}: stem conv1 is {tuple(w.shape)}, detectron2's stem needs a 7x7 "
                           "conv on 3 RGB channels (no cifar_stem / in_chans != 3 encoders)")
    return enc


def encoder_arch(obj: dict, path: str = "checkpoint") -> str:
    """The query encoder's ResNet (a key of :data:`DEPTHS`), validated as :func:`query_encoder` does."""
    return infer_arch(query_encoder(obj, path), obj, path)


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


def is_d2_weights(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a converted backbone (ours or the official converter's: a pickle ending in the
    ``matching_heuristics`` key), the only existing file a conversion may replace. Read as bytes, never
    unpickled."""
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(max(os.fstat(f.fileno()).st_size - 4096, 0))
            tail = f.read()
    except OSError:
        return False
    return head[:1] == b"\x80" and b"matching_heuristics" in tail


def write_pkl(res: dict, out: str | os.PathLike, check=None) -> None:
    """Write ``res`` to ``out`` atomically: a temporary file in the same folder (named ``*.pkl``,
    as detectron2's checkpointer needs), then ``check(tmp_path)`` if given (it raises to refuse the
    file), then ``os.replace`` over ``out``.  If writing or ``check`` fails, whatever was at ``out``
    is left as it was and the temporary file is removed."""
    with atomic_path(out, suffix=".pkl", check=check) as tmp:
        with open(tmp, "wb") as f:
            pickle.dump(res, f)
            f.flush()
            os.fsync(f.fileno())


def verify(pkl_path: str | os.PathLike, config: str | os.PathLike = DEFAULT_CONFIG,
           depth: int = 50) -> dict:
    """Load ``pkl_path`` into the detection model of ``config`` with detectron2's checkpointer.

    Returns ``{"matched": n, "unused": [...], "missing": [...], "mismatched": [...]}`` where
    ``unused`` are converted tensors detectron2 did not consume, ``missing`` are backbone /
    res5 parameters and buffers that it did not load, ``mismatched`` are tensors whose loaded
    value differs from the file.  A good conversion has all three empty.
    """

    ensure_detectron2()
    import logging

    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model


    cfg = load_cfg(config, ["MODEL.DEVICE", "cpu", "MODEL.RESNETS.DEPTH", str(depth)])
    model = build_model(cfg)
    model.eval()
    ckpt = DetectionCheckpointer(model)
    # silence the per-key table detectron2 prints while matching, and the checkpointer's
    # shape-mismatch warnings (the result below reports them: one error line, not a page)
    quiet = [(logging.getLogger("detectron2.checkpoint.c2_model_loading"), logging.ERROR),
             (ckpt.logger, logging.ERROR)]
    levels = [lg.level for lg, _ in quiet]
    for lg, level in quiet:
        lg.setLevel(level)
    try:
        with open(pkl_path, "rb") as f:
            data = pickle.load(f, encoding="latin1")
        loaded = ckpt._load_file(str(pkl_path))
        incompatible = ckpt._load_model(loaded)
    finally:
        for (lg, _), level in zip(quiet, levels):
            lg.setLevel(level)
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


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m transfer.convert", description=__doc__.split("\n\n")[0])
    p.add_argument("ckpt", help="pretrainer checkpoint (run_dir/checkpoint.pth) or official MoCo .pth.tar")
    p.add_argument("out", help="output detectron2 weights (.pkl)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="detection config whose model is used to verify the .pkl")
    p.add_argument("--no-verify", action="store_true", help="skip the detectron2 load check")
    a = p.parse_args(argv)
    try:
        # the .pkl never replaces the checkpoint, the config or a file that is no detectron2 weights file
        refuse_overwrite([a.out], [a.ckpt, a.config], ours=is_d2_weights)
        obj = load_checkpoint(a.ckpt)
        arch = encoder_arch(obj, a.ckpt)  # declared, or recognised from the weights
        res = convert(obj, a.ckpt)
        verified = {}

        def check(tmp):  # the .pkl replaces a.out only once detectron2 has loaded it cleanly
            r = verify(tmp, a.config, DEPTHS[arch])
            problems = [f"{len(r[k])} {k} ({', '.join(r[k][:3])}{', ...' if len(r[k]) > 3 else ''})"
                        for k in ("unused", "missing", "mismatched") if r[k]]
            if problems:
                kept = "left unchanged" if Path(a.out).exists() else "not written"
                raise ConvertError(f"detectron2 did not load the conversion of {a.ckpt} cleanly into "
                                   f"{Path(a.config).name}: " + "; ".join(problems) + f"; {a.out} {kept}")
            verified.update(r)

        if not a.no_verify and not Path(a.config).is_file():
            raise ConvertError(f"config not found: {a.config}")
        write_pkl(res, a.out, None if a.no_verify else check)
        print(f"wrote {a.out}: {len(res['model'])} tensors ({arch}, query encoder)")
        if verified:
            print(f"verified with detectron2: {verified['matched']} backbone tensors matched, 0 unused, "
                  "0 missing, 0 mismatched")
    except (UserError, ImportError, OSError) as e:
        return report(e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
