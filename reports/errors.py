"""The one error type of the report builder: a user-facing message, no traceback."""


class ReportError(Exception):
    """Bad input to ``python -m reports`` (unreadable results table, bad path, ...)."""
