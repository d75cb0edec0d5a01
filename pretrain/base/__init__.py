"""The base layer: the one user-error type and CLI guard (:mod:`.errors`), atomic file writing (:mod:`.fileio`),
YAML reading (:mod:`.yamlio`), the run directory and its lock (:mod:`.rundir`), the vocabulary of statuses and
error kinds (:mod:`.status`) and provenance (:mod:`.provenance`). Imports nothing of the project; torch-free."""
