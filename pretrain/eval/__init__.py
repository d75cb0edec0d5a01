"""The evaluation layer: the kNN monitor (:mod:`.knn`), the linear protocols (:mod:`.protocol`, :mod:`.probe`,
:mod:`.lincls`), the baselines (:mod:`.baselines`) and the official-layout export (:mod:`.export`). Imports the
layers below."""
