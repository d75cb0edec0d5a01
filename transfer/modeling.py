"""The ROI head of the MoCo detection recipe (paper appendix A.1, official
``detection/train_net.py``): detectron2's res5 ROI head of R50-C4 followed by one extra norm layer,
so that the res5 features fed to the box predictor are normalized like the backbone's
(SyncBN when fine-tuning, as in the paper).

Importing this module registers ``Res5ROIHeadsExtraNorm`` in detectron2's ``ROI_HEADS_REGISTRY``
(``MODEL.ROI_HEADS.NAME: "Res5ROIHeadsExtraNorm"`` in ``configs/Base-RCNN-C4-BN.yaml``).
"""
from .compat import ensure_detectron2

ensure_detectron2()

from detectron2.layers import get_norm  # noqa: E402
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads  # noqa: E402


class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5ROIHeads with an extra norm (``cfg.MODEL.RESNETS.NORM``) after the res5 stage."""

    def __init__(self, cfg, input_shape):
        super().__init__(cfg, input_shape)
        norm = get_norm(cfg.MODEL.RESNETS.NORM, self.res5[-1].out_channels)
        self.res5.add_module("norm", norm)


if "Res5ROIHeadsExtraNorm" not in ROI_HEADS_REGISTRY:
    ROI_HEADS_REGISTRY.register(Res5ROIHeadsExtraNorm)
