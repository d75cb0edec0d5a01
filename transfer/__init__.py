"""Detection transfer of MoCo representations (He et al., CVPR 2020, Sec. 4.2, appendix A.1):
detectron2 configs for PASCAL VOC and COCO (``configs/``), the checkpoint converter
(``convert``), the trainer (``train``), the submitit launcher (``launch``) and a synthetic
VOC-format dataset (``synthetic_voc``).  See transfer/README.md.
"""
