"""Which torchvision ResNet a checkpoint's query encoder is: the one rule that ``transfer.convert``
and ``transfer.train`` share.

The checkpoint's own ``arch`` (top level, or ``config.arch`` for mocobench checkpoints) wins, but
only if its weights agree with it; a checkpoint without ``arch`` is recognised from its weights
(blocks per stage and block type), never assumed to be a ResNet-50.  This module imports neither
``transfer.convert`` nor ``transfer.train`` (no import cycle).
"""
from __future__ import annotations

import re

#: torchvision bottleneck ResNets that detectron2's R-C4 / R-FPN builders accept, and their depth
DEPTHS = {"resnet50": 50, "resnet101": 101, "resnet152": 152}
#: (blocks in layer1..layer4, bottleneck blocks) -> torchvision constructor name
LAYOUTS = {((2, 2, 2, 2), False): "resnet18", ((3, 4, 6, 3), False): "resnet34",
           ((3, 4, 6, 3), True): "resnet50", ((3, 4, 23, 3), True): "resnet101",
           ((3, 8, 36, 3), True): "resnet152"}
_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


class ArchError(ValueError):
    """The checkpoint's architecture cannot be told, or its weights contradict its ``arch``."""


def declared_arch(ck: dict) -> str | None:
    """The ``arch`` the checkpoint names (top level or ``config.arch``), else None."""
    arch = ck.get("arch") or (ck.get("config") or {}).get("arch")
    return None if arch is None else str(arch)


def layout(enc: dict) -> tuple[tuple[int, ...], bool]:
    """(blocks per stage layer1..layer4, bottleneck?) of torchvision-named encoder tensors."""
    blocks = {s: set() for s in range(1, 5)}
    for k in enc:
        m = _BLOCK.match(k)
        if m:
            blocks[int(m.group(1))].add(int(m.group(2)))
    bottleneck = any(re.match(r"^layer[1-4]\.\d+\.conv3\.", k) for k in enc)
    return tuple(len(blocks[s]) for s in range(1, 5)), bottleneck


def arch_from_weights(enc: dict) -> str | None:
    """The torchvision ResNet whose layout the weights have (resnet18 ... resnet152), else None."""
    return LAYOUTS.get(layout(enc))


def infer_arch(enc: dict, ck: dict, path: str = "checkpoint") -> str:
    """The checkpoint's ResNet: its declared ``arch`` when the weights agree, else the one its
    weights have.  ``enc``: the query encoder's tensors with torchvision names (``conv1.weight``,
    ``layer1.0.conv1.weight``, ...); ``ck``: the loaded checkpoint.  Raises :class:`ArchError`."""
    declared = declared_arch(ck)
    found = arch_from_weights(enc)
    if declared is not None:
        if declared in LAYOUTS.values() and found is not None and found != declared:
            counts, bottleneck = layout(enc)
            raise ArchError(f"{path}: arch '{declared}' in the checkpoint, but its weights are a "
                            f"{found} ({'-'.join(map(str, counts))} "
                            f"{'bottleneck' if bottleneck else 'basic'} blocks)")
        return declared
    if found is None:
        counts, bottleneck = layout(enc)
        raise ArchError(f"{path}: no 'arch' in the checkpoint and its weights are no torchvision "
                        f"ResNet-18/34/50/101/152 ({'-'.join(map(str, counts))} "
                        f"{'bottleneck' if bottleneck else 'basic'} blocks)")
    return found
