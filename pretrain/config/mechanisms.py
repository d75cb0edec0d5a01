"""The paper's dictionary mechanisms (Fig. 2/3) by name, with each one's config rules: the suite's one list.

``MECHANISMS`` maps each name, in the paper's order (moco, end_to_end, memory_bank), to its
:class:`MechanismRules`: what it alone reads (``own_keys``) and the config combinations it refuses
(``problems``). Config validation asks the mechanism of a config for its rules; the names are what
``--mechanism``'s choices, the ablation grids and the reports' tables use. The networks that implement the
names are registered in :mod:`pretrain.models.registry`, which refuses a name not declared here.

Torch-free: the ablation launcher and ``python -m reports`` read it without loading torch.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass


def k_above_n(cfg, n: int, what: str, alt: str = "") -> str:
    """The message for K larger than the N training images (moco: a queue of K keys, memory_bank: K negatives
    drawn from the bank of one entry per image). ``what`` names N, ``alt`` another way out."""
    why = ("the queue would hold several keys of the same images, the current positives included"
           if cfg.mechanism == "moco" else
           "K negatives drawn from a bank of one entry per image repeat every image, the positive's own included")
    return (f"moco_k (K) {cfg.moco_k} is larger than {what} for mechanism {cfg.mechanism}: {why}; use "
            f"--moco-k <= {n}{alt} (the ablation grids drop such K with 'drop_k_above: subset', ablations/grid.py)")


def _k_fits_subset(cfg) -> list[str]:
    """moco and memory_bank draw K keys from the training images: K must not exceed a subset's size."""
    if 0 < cfg.subset < cfg.moco_k:
        return [k_above_n(cfg, cfg.subset, f"subset {cfg.subset} (the pretraining images)", " or a larger subset")]
    return []


def _end_to_end(cfg) -> list[str]:
    """end_to_end: the dictionary is the mini-batch (K = batch size)."""
    if cfg.moco_k != cfg.batch_size:
        return [f"end_to_end: the dictionary is the mini-batch, so moco_k must equal batch_size "
                f"(got K={cfg.moco_k}, batch={cfg.batch_size}); sweep K by sweeping batch_size"]
    return []


def _memory_bank(cfg) -> list[str]:
    """memory_bank: K fits the images; a bank initialised from features needs one pass over a tensor dataset."""
    out = _k_fits_subset(cfg)
    if cfg.bank_init == "features" and cfg.dataset == "imagefolder":
        out.append("bank_init features needs a fixed-size dataset (one pass over tensors), not imagefolder")
    return out


@dataclass(frozen=True)
class MechanismRules:
    """What a mechanism declares to the config: the keys only it reads (a preset may set them for all; the
    other mechanisms' run ids ignore them) and ``problems(cfg)``, the messages of the combinations it refuses."""
    own_keys: tuple[str, ...] = ()
    problems: Callable[..., list[str]] = lambda cfg: []


class Mechanisms(Mapping):
    """Name -> :class:`MechanismRules`, in declaration order (read-only)."""

    def __init__(self, rules: dict[str, MechanismRules]):
        self._rules = dict(rules)

    def __getitem__(self, name: str) -> MechanismRules:
        return self._rules[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def own_keys_of_others(self, name: str) -> tuple[str, ...]:
        """The keys that another mechanism than ``name`` alone reads (left out of ``name``'s run identity)."""
        return tuple(k for other, r in self._rules.items() if other != name for k in r.own_keys)

    def __repr__(self) -> str:
        return f"Mechanisms({', '.join(self._rules)})"


MECHANISMS = Mechanisms({
    "moco": MechanismRules(problems=_k_fits_subset),
    "end_to_end": MechanismRules(problems=_end_to_end),
    "memory_bank": MechanismRules(own_keys=("bank_init",), problems=_memory_bank),
})
