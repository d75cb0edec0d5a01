"""The report builder's error: a user-facing message, no traceback (a ``pretrain.base.errors.UserError``)."""
from pretrain.base.errors import UserError


class ReportError(UserError):
    """Bad input to ``python -m reports`` (unreadable results table, bad path, ...)."""
