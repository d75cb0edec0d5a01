"""The suite's one vocabulary of statuses: a run's status (``summary.json``, the results table's ``status``), the
kind of an error row (``error_kind``) and the states a planned run is shown in. Every package spells them
from here.

A run's status:

``done``           trained, no declared failure criterion fired;
``diverged``       the loss became NaN/inf (:class:`pretrain.base.errors.Diverged`);
``not_converged``  the declared criterion fired (``fail_loss_frac``, ``fail_below_init``: see
                   ``pretrain/engine/criteria.py:not_converged``);
``error``          no result, with ``error_kind`` (:data:`ERROR_KINDS`).

Only ``done``, ``diverged`` and ``not_converged`` are results (:data:`RESULTS`); ``diverged`` and
``not_converged`` are the paper's "fail" (:data:`FAILED`). A summary with status ``failed`` is from before the
two were told apart; :func:`from_summary` is the one place that reads it. Results rows are also ``pending``
(submitted, not started) and ``running`` while their job runs.
"""
from __future__ import annotations

from typing import Mapping

DONE = "done"
DIVERGED = "diverged"
NOT_CONVERGED = "not_converged"
ERROR = "error"
RESULTS = (DONE, DIVERGED, NOT_CONVERGED)
FAILED = (DIVERGED, NOT_CONVERGED)
UNSPLIT_FAILED = "failed"          # one status for both kinds of "fail", read as one of them by from_summary
PENDING = "pending"
RUNNING = "running"
ROW_STATUSES = (PENDING, RUNNING, DONE, DIVERGED, NOT_CONVERGED, ERROR)     # the results table's status column

# error_kind of an error row: why there is no result
OOM = "oom"                       # out of (GPU) memory
DISTRIBUTED = "distributed"       # a collective or the process group failed
USER = "user"                     # bad input (a UserError): a path, a key, a value
CRASH = "crash"                   # anything else that raised
LOST = "lost"                     # the job ended without writing a summary (killed, preempted, node lost)
CONFIG_CHANGED = "config_changed"  # the grid's config of the run differs from the one it was submitted with
ERROR_KINDS = (OOM, DISTRIBUTED, USER, CRASH, LOST, CONFIG_CHANGED)

# the states `ablations run/status` shows a planned run in (besides the RESULTS)
TO_DO = "todo"                    # to be trained (or resumed)
QUEUED = "queued"                 # submitted to SLURM, not started
SUBMITTED = "submitted"           # submitted by the local executor, not started
PARTIAL = "partial"               # started, stopped before its last epoch
SHARED = "shared"                 # the same run as an earlier grid's: trained once
PLAN_STATES = (TO_DO, QUEUED, SUBMITTED, RUNNING, PARTIAL, PENDING, SHARED)


def from_summary(summary: Mapping | None) -> str:
    """The status of a summary (or results row): the stored one, except the unsplit ``failed``, which is
    ``diverged`` when its reason starts with "diverged" (the only way it was written) and ``not_converged``
    otherwise. '' when there is no status."""
    if not summary:
        return ""
    st = summary.get("status")
    if st is None or (isinstance(st, float) and st != st):      # missing, or NaN in a table
        return ""
    st = str(st)
    if st == UNSPLIT_FAILED:
        reason = summary.get("reason")
        reason = "" if reason is None or (isinstance(reason, float) and reason != reason) else str(reason)
        return DIVERGED if reason.strip().startswith("diverged") else NOT_CONVERGED
    return st


def is_unsplit_failed(summary: Mapping | None) -> bool:
    """True for a summary written before the statuses were told apart (status ``failed``)."""
    return bool(summary) and summary.get("status") == UNSPLIT_FAILED
