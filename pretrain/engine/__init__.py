"""The engine layer: the training loop (:mod:`.trainer`), the failure criteria (:mod:`.criteria`), a run's
lifecycle (:mod:`.lifecycle`: lock, finished / re-evaluate / train, summary) and the step benchmark
(:mod:`.bench`). Imports the layers below; only the CLIs import it."""
