"""mocobench ablations: the papers' ablation grids as data (``grids/*.yaml``), launched with submitit on SLURM
(job arrays, DDP with one task per GPU, requeue on preemption) or locally, into one results table
(:mod:`ablations.results`). ``slurm/cluster.sh`` starts a real single-node SLURM for CI and users."""
