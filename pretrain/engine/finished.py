"""What a previous ``summary.json`` means for a config: the run is finished (its result stands), finished but to
be re-evaluated (its evaluation settings changed), or to be trained. Torch-free, so the grid planner reads it."""
from __future__ import annotations

from pretrain.base import status as S
from pretrain.config import Config, eval_settings


def same_eval(prev_eval: dict | None, cfg: Config) -> bool:
    """Whether a summary's recorded evaluation settings are ``cfg``'s (a key the summary does not hold counts with
    its default value, so adding an evaluation key re-evaluates only runs that set it)."""
    defaults = eval_settings(Config())
    return {**defaults, **(prev_eval or {})} == eval_settings(cfg)


def finished_state(prev: dict | None, cfg: Config, run_id: str) -> str:
    """What a previous summary means for ``cfg`` (the run ``run_id``): '' (no finished result of this run:
    train or resume), ``current`` (the result stands), ``relabel`` (an unsplit ``failed`` summary of a diverged
    run: only its status is rewritten) or ``reevaluate`` (a finished run whose evaluation settings changed, or
    an unsplit not-converged one: re-evaluated from its checkpoint, not trained again)."""
    if not prev or prev.get("run_id") != run_id:
        return ""
    st = S.from_summary(prev)
    if st not in S.RESULTS:
        return ""
    if st == S.DIVERGED:                # non-finite weights: nothing to evaluate
        return "relabel" if S.is_unsplit_failed(prev) else "current"
    if S.is_unsplit_failed(prev) or not same_eval(prev.get("eval"), cfg):
        return "reevaluate"
    return "current"
