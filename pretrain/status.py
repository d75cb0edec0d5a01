"""The status of a pretraining run, stored as its own field in ``summary.json`` and the results table.

``done``           trained, no declared failure criterion fired;
``diverged``       the loss became NaN/inf (:class:`pretrain.errors.Diverged`);
``not_converged``  the declared criterion fired (``fail_loss_frac``, ``fail_below_init``: see
                   ``pretrain/train.py:not_converged``);
``error``          no result (crash, out of memory, timeout, config changed, lost job), with ``error_kind``.

Only ``done``, ``diverged`` and ``not_converged`` are results (:data:`RESULTS`). Summaries written before this
distinction have status ``failed``; :func:`from_summary` is the one place that reads them.
"""
from __future__ import annotations

from typing import Mapping

DONE = "done"
DIVERGED = "diverged"
NOT_CONVERGED = "not_converged"
ERROR = "error"
RESULTS = (DONE, DIVERGED, NOT_CONVERGED)
LEGACY_FAILED = "failed"          # written before diverged / not_converged were told apart


def from_summary(summary: Mapping | None) -> str:
    """The status of a summary (or results row): the stored one, except the legacy ``failed``, which is
    ``diverged`` when its reason starts with "diverged" (the only way it was written) and ``not_converged``
    otherwise. '' when there is no status."""
    if not summary:
        return ""
    st = summary.get("status")
    if st is None or (isinstance(st, float) and st != st):      # missing, or NaN in a table
        return ""
    st = str(st)
    if st == LEGACY_FAILED:
        reason = summary.get("reason")
        reason = "" if reason is None or (isinstance(reason, float) and reason != reason) else str(reason)
        return DIVERGED if reason.strip().startswith("diverged") else NOT_CONVERGED
    return st


def is_legacy(summary: Mapping | None) -> bool:
    """True for a summary written before the statuses were told apart (status ``failed``)."""
    return bool(summary) and summary.get("status") == LEGACY_FAILED
