"""mocobench pretrainer: MoCo v1/v2 (He et al. 2020; Chen et al. 2020) with the paper's rival dictionary
mechanisms (end-to-end, memory bank) and shuffle-BN variants as swappable pieces.

Layers, each a package importing only those below it (import-linter contracts in ``pyproject.toml``): base,
config, runtime, data, models, eval, engine; the command-line entry points are the modules of this folder
(``python -m pretrain``, ``pretrain.knn``, ``pretrain.lincls``, ``pretrain.export``, ``pretrain.bench``,
``pretrain.fetch_data``)."""
