"""mocobench pretrainer: MoCo v1/v2 (He et al. 2020; Chen et al. 2020) with the paper's rival
dictionary mechanisms (end-to-end, memory bank) and shuffle-BN variants as swappable pieces."""
