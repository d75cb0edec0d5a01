"""Ablation grids as data: ``ablations/grids/<name>.yaml`` -> the list of runs for one preset.

A grid file names one experiment of the papers (MoCo, He et al. 2020, Fig. 3, Table/Sec. 4.1 momentum,
Fig. A.1; MoCo v2, Chen et al. 2020, Table 1) with the paper's values, plus per-preset scaling::

    name: fig3_mechanisms
    paper: "He et al. 2020, Figure 3"
    eval: [knn, lincls]          # kNN always; lincls = the linear protocol after pretraining
    fixed: {}                    # pretrainer config fields set for every run
    sweep:                       # a list of sub-grids, each the cartesian product of its lists
      - mechanism: [moco, memory_bank]
        moco_k: [256, 512, 1024, 4096, 16384, 65536]
      - mechanism: end_to_end
        lr_scaling: linear
        zip: {moco_k: [256, 512, 1024], batch_size: [256, 512, 1024]}   # zipped, not crossed
    seeds: 3                     # optional: every cell runs with N seeds from the preset's first seed (SEED_DEFAULTS)
    presets:                     # one entry per supported pretrainer preset
      imagenet: {}               # the paper's values unchanged
      tiny:
        drop: [{moco_k: 65536}]  # runs dropped (all keys equal, matched on the paper's values)
        drop_k_above: subset     # or a number: runs with K > the runs' subset (--set, fixed, preset) are dropped
        map: {epochs: {200: preset, 800: 2*preset}}   # paper value -> preset value, after drop
        fixed: {schedule: [0.6*epochs, 0.8*epochs]}   # relative to the run's epochs
        eval: [knn]
        seeds: 5                 # optional, beats the grid's top-level seeds
        why: "K > 20000 images dropped"

Keys are the pretrainer's config field names (``pretrain.config.Config``); an unknown key is an error.
Identical runs after mapping are merged (one run, one config hash). :func:`expand` resolves each run's config
once (the preset, then its overrides: ``pretrain.config.load_config``) and hands it on as ``RunSpec.cfg``:
the launcher hashes it, the job trains it, the cost estimate benches it; nothing downstream resolves it again.

Seeds are an axis: every cell runs with ``seed`` = S..S+N-1 (the config field ``seed``: the same initialisation
and data order in every cell, a paired design). N: ``--seeds`` on the command line > the preset section's
``seeds`` > the grid's top-level ``seeds`` > :data:`SEED_DEFAULTS` (1 for a preset not listed). S:
``--seed-start`` > :data:`SEED_START_DEFAULTS` (tiny 1000: seeds no design decision saw; design pilots use
:data:`DESIGN_SEEDS`). A cell that
sets ``seed`` itself (sweep or fixed), and ``--set seed=S``, run exactly that one seed. The seed is part of
the config hash: runs of different seeds never share a directory; seed 0 is the run without any seed.

``--set KEY=VALUE`` (:func:`expand`'s ``sets``) sets a key for every run on top of ``fixed`` (so
``drop_k_above: subset`` and ``0.6*epochs`` see it); a key the grid sweeps is refused (:func:`check_sets`).
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pretrain.base.errors import UserError
from pretrain.base.yamlio import read_yaml_mapping
from pretrain.config import FIELD_NAMES, Config, load_config
from pretrain.config.coerce import check_keys, coerce

GRID_DIR = Path(__file__).resolve().parent / "grids"
EVALS = ("knn", "lincls")
GRID_KEYS = {"name", "paper", "description", "eval", "fixed", "sweep", "presets", "seeds"}
PRESET_KEYS = {"fixed", "map", "drop", "drop_k_above", "eval", "why", "seeds"}
# seeds per cell when neither the command line, the grid's preset section nor the grid says otherwise
# tiny 6: the fewest with which every claim can be decided (m0_fails, McNemar's exact test: 2^-n < 0.025 needs
# n >= 6) and the most the 15 trainings per seed of the budget design fit in 2 hours on 2 CPU cores
# (ablations/README.md, "The budget design"). The first set had 7 (claims v1's sign-flip test under Holm).
SEED_DEFAULTS = {"tiny": 6, "cifar10": 3}
DEFAULT_SEEDS = 1
# The first seed of the axis when the command line does not say (--seed-start). Design decisions (pilots) read
# design seeds 100-199 and the validation split (eval_split: val); confirmatory sets judge seeds from 1000 on,
# which no design decision saw. Seeds 0-6 are the first tiny set (claims v1, exploratory: its design was chosen
# on seeds 0-3 and the test set).
DESIGN_SEEDS = range(100, 200)
SEED_START_DEFAULTS = {"tiny": 1000}
DEFAULT_SEED_START = 0


@dataclass
class RunSpec:
    """One run of a grid: the pretrainer overrides (on top of the preset), its evaluations and, once
    :func:`expand` has resolved them, its config (what the run trains; resolved once, here)."""
    overrides: dict
    swept: dict                  # the grid's swept keys and their (mapped) values, for labels and tables
    eval: list = field(default_factory=lambda: ["knn"])
    cfg: Config | None = None    # load_config(preset, overrides), set by expand

    @property
    def label(self) -> str:
        return " ".join(f"{k}={_fmt(v)}" for k, v in self.swept.items())


def _fmt(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, list) else str(v)


def grid_names() -> list[str]:
    return sorted(p.stem for p in GRID_DIR.glob("*.yaml"))


def grid_path(name: str) -> Path:
    """A grid by name (``fig3_mechanisms``) or by path to a YAML file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise UserError(f"grid file not found: {p}")
        return p
    p = GRID_DIR / f"{name}.yaml"
    if not p.is_file():
        raise UserError(f"unknown grid {name!r} (known: {', '.join(grid_names())})")
    return p


def load_grid(name: str) -> dict:
    """The grid file ``name`` (:func:`grid_path`), checked against the grid format (:func:`check_grid`)."""
    path = grid_path(name)
    g = read_yaml_mapping(path, "a grid")
    check_grid(g, str(path))
    g.setdefault("name", path.stem)
    g["_path"] = str(path)
    return g


def _mapping(v, where: str, names: bool = True) -> dict:
    """``v`` as a mapping (absent / empty: ``{}``) whose keys are names (``names``; a ``map`` entry's keys are
    paper values), else a UserError saying what ``where`` is."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise UserError(f"{where} must be a mapping (key: value), got {type(v).__name__} {v!r}")
    for k in v if names else ():
        if not isinstance(k, str):
            raise UserError(f"{where}: key {k!r} is not a name")
    return v


def _evals(v, where: str) -> list:
    """An ``eval`` entry as a list of known evaluations. A single name (``eval: lincls``) is a list of that
    one name, as a single value in a sweep is a list of one value (never split letter by letter)."""
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise UserError(f"{where}: eval must be a list of evaluations ({', '.join(EVALS)}), got {v!r}")
    bad = sorted(set(v) - set(EVALS))
    if bad:
        raise UserError(f"{where}: unknown eval {', '.join(bad)} (known: {', '.join(EVALS)})")
    return v


def _values(v, where: str) -> None:
    """A swept key's values: one value, or a non-empty list (an empty list crosses to no runs at all)."""
    if isinstance(v, list) and not v:
        raise UserError(f"{where}: an empty list (no values) would make the sub-grid expand to no runs; give at "
                        f"least one value or remove the key")
    if isinstance(v, dict):
        raise UserError(f"{where} must be a value or a list of values, got a mapping {v!r}")


def check_grid(g: dict, where: str) -> None:
    """The grid format (the module's docstring), checked once where a grid file enters: every key known and
    of its type; ``sweep`` a non-empty list of mappings whose lists are non-empty (``zip``: lists of equal
    length); ``presets`` a mapping of sections with ``fixed`` / ``map`` mappings, ``drop`` a list of mappings,
    ``drop_k_above`` ``subset`` or a number > 0, ``eval`` known evaluations, ``seeds`` an integer >= 1 and
    ``why`` text. A single ``eval`` name is normalised to a list of it here. A mistake is one UserError naming
    the file and the key, before anything is planned (never a traceback or a run set that silently differs)."""
    unknown = sorted(set(g) - GRID_KEYS)
    if unknown:
        raise UserError(f"{where}: unknown grid key(s) {', '.join(map(str, unknown))} (known: {', '.join(sorted(GRID_KEYS))})")
    for k in ("name", "paper", "description"):
        if g.get(k) is not None and not isinstance(g[k], str):
            raise UserError(f"{where}: {k} must be text, got {g[k]!r}")
    if "name" in g and (not g["name"] or "/" in g["name"] or g["name"] in (".", "..")):
        raise UserError(f"{where}: name {g['name']!r} must be a non-empty name without '/' (it names a folder)")
    if g.get("eval") is not None:
        g["eval"] = _evals(g["eval"], where)
    else:
        g.pop("eval", None)                 # `eval:` with nothing: the default (knn)
    _mapping(g.get("fixed"), f"{where}: fixed")
    if g.get("seeds") is not None:
        _check_seeds(g["seeds"], where)
    if not isinstance(g.get("sweep"), list) or not g["sweep"]:
        raise UserError(f"{where}: 'sweep' must be a non-empty list of sub-grids")
    for i, sub in enumerate(g["sweep"]):
        sw = f"{where}: sweep[{i}]"
        for k, v in _mapping(sub, sw).items():
            if k == "zip":
                zipped = _mapping(v, f"{sw}: zip")
                for zk, zv in zipped.items():
                    if not isinstance(zv, list):
                        raise UserError(f"{sw}: zip: {zk} must be a list (zipped lists are paired element by "
                                        f"element), got {zv!r}")
                    _values(zv, f"{sw}: zip: {zk}")
                if len({len(zv) for zv in zipped.values()}) > 1:
                    raise UserError(f"{sw}: the lists under 'zip' must have equal lengths")
            else:
                _values(v, f"{sw}: {k}")
    if not isinstance(g.get("presets"), dict) or not g["presets"]:
        raise UserError(f"{where}: 'presets' must map preset names to their scaling")
    for pname, p in g["presets"].items():
        pw = f"{where}: preset {pname}"
        p = _mapping(p, pw)
        bad = sorted(set(p) - PRESET_KEYS)
        if bad:
            raise UserError(f"{pw}: unknown key(s) {', '.join(bad)} (known: {', '.join(sorted(PRESET_KEYS))})")
        _mapping(p.get("fixed"), f"{pw}: fixed")
        for k, m in _mapping(p.get("map"), f"{pw}: map").items():
            _mapping(m, f"{pw}: map: {k} (paper value -> preset value)", names=False)
        drops = p.get("drop")
        if drops is not None:
            if not isinstance(drops, list):
                raise UserError(f"{pw}: drop must be a list of runs to drop (each a mapping of key: paper value, "
                                f"e.g. drop: [{{moco_k: 65536}}]), got {drops!r}")
            for j, d in enumerate(drops):
                if not _mapping(d, f"{pw}: drop[{j}]"):
                    raise UserError(f"{pw}: drop[{j}] is empty: it would match (and drop) every run")
        k_max = p.get("drop_k_above")
        if k_max is not None and k_max != "subset" and (isinstance(k_max, bool) or not isinstance(k_max, (int, float))
                                                         or not k_max > 0):
            raise UserError(f"{pw}: drop_k_above must be 'subset' or a number > 0, got {k_max!r}")
        if p.get("eval") is not None:
            p["eval"] = _evals(p["eval"], pw)
        else:
            p.pop("eval", None)
        if p.get("seeds") is not None:
            _check_seeds(p["seeds"], pw)
        if p.get("why") is not None and not isinstance(p["why"], str):
            raise UserError(f"{pw}: why must be text, got {p['why']!r}")


def _check_seeds(n, where: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"{where}: seeds must be an integer >= 1, got {n!r}")
    return n


def default_seeds(preset: str) -> int:
    """The seeds of a preset when nothing else says (:data:`SEED_DEFAULTS`)."""
    return SEED_DEFAULTS.get(Path(preset).stem, DEFAULT_SEEDS)


def default_seed_start(preset: str) -> int:
    """The first seed of a preset's seed axis when nothing else says (:data:`SEED_START_DEFAULTS`)."""
    return SEED_START_DEFAULTS.get(Path(preset).stem, DEFAULT_SEED_START)


def check_seed_start(start) -> int:
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise UserError(f"--seed-start must be an integer >= 0, got {start!r}")
    return start


def resolve_seeds(grid: dict, preset: str, seeds: int | None = None) -> int:
    """Seeds per cell: ``seeds`` (the command line) > the grid's preset section > the grid's top level >
    :func:`default_seeds`."""
    if seeds is not None:
        return _check_seeds(seeds, "--seeds")
    ps = (grid.get("presets") or {}).get(preset) or {}
    if ps.get("seeds") is not None:
        return _check_seeds(ps["seeds"], f"grid {grid.get('name')}: preset {preset}")
    if grid.get("seeds") is not None:
        return _check_seeds(grid["seeds"], f"grid {grid.get('name')}")
    return default_seeds(preset)


def _expand_sub(sub: dict, where: str) -> list[dict]:
    sub = dict(sub)
    zipped = sub.pop("zip", None) or {}
    crossed = {k: (v if isinstance(v, list) else [v]) for k, v in sub.items()}
    rows = [dict(zip(crossed, combo)) for combo in itertools.product(*crossed.values())]
    if zipped:
        lens = {len(v) for v in zipped.values()}
        if len(lens) != 1:
            raise UserError(f"{where}: the lists under 'zip' must have equal lengths")
        pairs = [dict(zip(zipped, vals)) for vals in zip(*zipped.values())]
        rows = [{**r, **p} for r in rows for p in pairs]
    return rows


_EXPR = re.compile(r"^\s*(?:([0-9.]+)\s*\*\s*)?(preset|epochs)\s*$")


def _resolve(ov: dict, base: dict, grid: str) -> dict:
    """Values relative to the preset (``base``: the preset's config as a dict): ``preset`` (the preset's value
    of that key), ``2*preset``, and ``0.6*epochs`` (a fraction of the run's epochs, e.g. for a step
    schedule); rounded for int fields."""
    out = dict(ov)

    def val(key, v, epochs):
        if not isinstance(v, str) or not _EXPR.match(v):
            return v
        f, what = _EXPR.match(v).groups()
        ref = base[key] if what == "preset" else epochs
        if isinstance(ref, list):
            raise UserError(f"grid {grid}: {key}: {v!r} needs a number")
        x = float(f or 1) * ref
        return int(round(x)) if isinstance(ref, int) and not isinstance(ref, bool) else x

    if "epochs" in out:
        out["epochs"] = val("epochs", out["epochs"], None)
    epochs = out.get("epochs")
    if epochs is None:
        epochs = base["epochs"]
    for k, v in out.items():
        if k == "epochs":
            continue
        out[k] = [val(k, x, epochs) for x in v] if isinstance(v, list) else val(k, v, epochs)
    return out


def _matches(run: dict, cond: dict) -> bool:
    return all(run.get(k) == v for k, v in cond.items())


def swept_keys(grid: dict) -> list[str]:
    """The config keys the grid's sub-grids set (crossed or zipped): what tells its runs apart."""
    keys: list[str] = []
    for sub in grid.get("sweep") or []:
        if not isinstance(sub, dict):
            continue
        zipped = sub.get("zip") if isinstance(sub.get("zip"), dict) else {}
        keys += [k for k in [*sub, *zipped] if k != "zip" and k not in keys]
    return keys


def check_sets(grid: dict, sets: dict | None) -> None:
    """``--set KEY=VALUE`` on a key the grid sweeps would give every run the same value under the swept
    labels: refused (``seed`` excepted: ``--set seed=S`` replaces the seed axis). Unknown keys are refused."""
    check_keys(sets or {}, "--set")
    for k in sets or {}:
        if k != "seed" and k in swept_keys(grid):
            raise UserError(f"--set {k}: grid {grid['name']} sweeps {k} (its runs differ in it), "
                            f"so --set would give them all one {k} under their swept labels; drop --set {k} or "
                            f"run a grid file of your own")


def _subset_for_drop(fixed: dict, base: dict, grid: str) -> int:
    """The pretraining images of the grid's runs for ``drop_k_above: subset``: the fixed values' (``--set``
    included) ``subset``, else the preset's (``base``; 0 = all)."""
    if "subset" in fixed:
        return coerce("subset", _resolve({"subset": fixed["subset"]}, base, grid)["subset"])
    return base["subset"]


def expand(grid: dict, preset: str, seeds: int | None = None, seed: int | None = None,
           sets: dict | None = None, seed_start: int | None = None) -> list[RunSpec]:
    """The runs of ``grid`` at ``preset``: sweep -> drop (paper values) -> map -> fixed, deduplicated, then
    the seed axis: every cell with seeds S..S+N-1 (N: :func:`resolve_seeds`; S: ``seed_start``, default
    :func:`default_seed_start`), seed-major (all cells of the first seed first). A cell that sets ``seed`` itself runs that one seed. ``seed``: exactly that one seed for every
    cell (``--set seed=S``, which sets it for every run; no axis). ``sets``: ``--set`` values for every run,
    on top of the fixed ones (so ``drop_k_above: subset`` and ``0.6*epochs`` see them); a swept key is refused
    (:func:`check_sets`). Each run's config is resolved here, once (``RunSpec.cfg``); the preset alone is
    read once for the values relative to it."""
    check_sets(grid, sets)
    sets = {k: v for k, v in (sets or {}).items() if k != "seed"}
    presets = grid["presets"]
    if preset not in presets:
        raise UserError(f"grid {grid['name']} has no scaling for preset {preset!r} "
                        f"(it has: {', '.join(presets)}); add a 'presets: {preset}:' section")
    base = load_config(preset).to_dict()
    ps = presets[preset] or {}
    evals = list(ps.get("eval", grid.get("eval", ["knn"])))
    if "knn" not in evals:
        evals.insert(0, "knn")
    bad = sorted(set(evals) - set(EVALS))
    if bad:
        raise UserError(f"grid {grid['name']}: unknown eval {', '.join(bad)} (known: {', '.join(EVALS)})")
    fixed = {**(grid.get("fixed") or {}), **(ps.get("fixed") or {}), **sets}
    mapping = ps.get("map") or {}
    drops = ps.get("drop") or []
    k_max = ps.get("drop_k_above")
    if k_max == "subset":                 # K larger than the pretraining set: no such queue/bank
        k_max = _subset_for_drop(fixed, base, grid["name"]) or None
    if "moco_k" in sets:                  # one K for every run: not dropped, refused if K > N (pretrain.config)
        k_max = None
    runs, seen, k_dropped = [], set(), []
    for i, sub in enumerate(grid["sweep"]):
        if not isinstance(sub, dict):
            raise UserError(f"grid {grid['name']}: sweep[{i}] must be a mapping")
        for r in _expand_sub(sub, f"grid {grid['name']} sweep[{i}]"):
            if any(_matches(r, d) for d in drops):
                continue
            if k_max:
                k = coerce("moco_k", r.get("moco_k", fixed.get("moco_k", 0)) or 0)
                if k > k_max:
                    k_dropped.append(k)
                    continue
            r = {k: (mapping[k].get(v, v) if k in mapping and not isinstance(v, list) else v) for k, v in r.items()}
            ov = _resolve({**fixed, **r}, base, grid["name"])
            r = {k: ov[k] for k in r}
            unknown = sorted(set(ov) - set(FIELD_NAMES))
            if unknown:
                raise UserError(f"grid {grid['name']}: unknown config key(s) {', '.join(unknown)}")
            key = yaml.safe_dump(ov, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            runs.append(RunSpec(overrides=ov, swept=r, eval=evals))
    if not runs:
        why = (f"every run has K ({', '.join(map(str, sorted(set(k_dropped))))}) above the {k_max} pretraining "
               f"images (drop_k_above); set a larger subset or --set moco_k=<= {k_max}" if k_dropped else
               "its preset section's drop removes every run; drop fewer runs")
        raise UserError(f"grid {grid['name']} at {preset}: nothing would run: {why}")
    if seed is not None:
        seed_list = [int(seed)]
    else:
        start = default_seed_start(preset) if seed_start is None else check_seed_start(seed_start)
        seed_list = list(range(start, start + resolve_seeds(grid, preset, seeds)))
    out, seen = [], set()
    for i, sd in enumerate(seed_list):
        for s in runs:
            if "seed" in s.overrides and seed is None:           # a cell with its own seed: that one seed
                spec = s if i == 0 else None
            else:
                spec = RunSpec(overrides={**s.overrides, "seed": sd}, swept={**s.swept, "seed": sd},
                               eval=list(s.eval))
            key = spec and yaml.safe_dump(spec.overrides, sort_keys=True)
            if spec is not None and key not in seen:
                seen.add(key)
                out.append(spec)
    for spec in out:
        spec.cfg = load_config(preset, spec.overrides)          # the one resolution of each run
    return out
