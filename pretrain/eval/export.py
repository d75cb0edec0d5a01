"""Export a pretrainer checkpoint in the official MoCo layout (facebookresearch/moco ``main_moco.py``).

``python -m pretrain.export RUN_DIR/checkpoint.pth OUT.pth.tar``

Writes ``{"state_dict": {"module.encoder_q.*", "module.encoder_k.*", "module.queue", "module.queue_ptr"},
"arch": ..., "epoch": ..., "config": ...}``: the keys of the official ``moco/builder.py`` model wrapped in
DistributedDataParallel (hence ``module.``), so the official ``main_lincls.py --pretrained``,
``detection/convert-pretrain-to-detectron2.py`` and other tools written for official checkpoints read it.
``epoch`` is the number of finished epochs (as the official checkpoints); ``config`` (our resolved config, an
extra key the official tools ignore) lets ``python -m pretrain.lincls`` read the file without ``--preset``.
Every tensor is on the CPU; the file is written atomically and loads with ``torch.load(weights_only=True)``.

No optimizer state is exported: our SGD's parameter indexing (only the parameters that require gradient, in
our module order) differs from the official one, so the file cannot ``--resume`` the official ``main_moco.py``
(it is a pretrained model, not a resumable run). End-to-end checkpoints (no key encoder or queue) and
memory-bank checkpoints (a ``bank`` instead of the queue) export what their state dict holds, prefixed
``module.``. Encoders that are not a standard torchvision ResNet (``width`` != 64, ``cifar_stem``,
``in_chans`` != 3) export with a warning: the official tools build plain torchvision models and cannot load
them.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pretrain.base.errors import UserError
from pretrain.base.fileio import atomic_save, refuse_overwrite
from pretrain.eval.lincls import check_writable
from pretrain.runtime.checkpoint import FORMAT, load, query_encoder_state


def standard_resnet_problem(cfg: dict) -> str:
    """Why the encoder is not what ``torchvision.models.<arch>()`` builds ('' if it is)."""
    why = []
    if int(cfg.get("width", 64)) != 64:
        why.append(f"width {cfg.get('width')}")
    if cfg.get("cifar_stem", False):
        why.append("cifar_stem")
    if int(cfg.get("in_chans", 3)) != 3:
        why.append(f"in_chans {cfg.get('in_chans')}")
    return ", ".join(why)


def official_layout(ck: dict, path="checkpoint") -> dict:
    """Our loaded checkpoint dict -> the official MoCo checkpoint dict (CPU tensors, no optimizer)."""
    if not isinstance(ck.get("config"), dict) or ck.get("format", FORMAT) != FORMAT:
        raise UserError(f"{path}: not a mocobench pretrainer checkpoint (no config or format {FORMAT})")
    sd = ck["state_dict"]
    if any(str(k).startswith("module.") for k in sd):
        raise UserError(f"{path}: already in the official layout ('module.*' keys); nothing to export")
    query_encoder_state(ck, path)                      # one UserError if there is no encoder_q.*
    cfg = ck["config"]
    return {"state_dict": {f"module.{k}": v.detach().cpu() for k, v in sd.items()},
            "arch": ck.get("arch", cfg.get("arch")), "epoch": int(ck.get("epoch", 0)), "config": dict(cfg)}


def _is_export(path: Path) -> bool:
    """Whether ``path`` holds an export of ours (official layout with our config): the only existing file an
    export may replace (a downloaded official checkpoint of that name is kept)."""
    try:
        ck = load(path)
    except UserError:
        return False
    return isinstance(ck.get("config"), dict) and all(str(k).startswith("module.") for k in ck["state_dict"])


def export(ckpt_path, out_path) -> dict:
    """Read ``ckpt_path`` (ours), write ``out_path`` (official layout), return what was written."""
    out_path = Path(out_path)
    check_writable(out_path)
    refuse_overwrite([out_path], [ckpt_path], ours=_is_export)
    ck = load(ckpt_path)
    off = official_layout(ck, ckpt_path)
    problem = standard_resnet_problem(off["config"])
    if problem:
        print(f"warning: {off['arch']} with {problem} is not a standard torchvision ResNet; the official MoCo "
              f"tools build torchvision.models.{off['arch']}() and cannot load it", file=sys.stderr)
    atomic_save(off, out_path)
    return off
