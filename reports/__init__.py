"""mocobench reports: the paper's tables and curves regenerated from the results
table (``ablations.results``), side by side with the paper's numbers
(``reports/paper/*.csv``).  Entry point: ``python -m reports``."""

from .build import build  # noqa: F401
