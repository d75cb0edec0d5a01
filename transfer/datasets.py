"""Dataset names for the transfer configs, in detectron2's layout under ``$DETECTRON2_DATASETS``
(default ``./datasets``), read when this module is imported (as detectron2 does for its own):

* PASCAL VOC: ``voc_2007_trainval``, ``voc_2012_trainval``, ``voc_2007_test`` (detectron2 built-ins,
  folders ``VOC2007/`` and ``VOC2012/``).
* COCO: ``coco_2017_train``, ``coco_2017_val`` (built-ins, folder ``coco/``).
* Synthetic VOC (tests and demos): ``voc_synthetic_trainval``, ``voc_synthetic_test``, folder
  ``VOC_synthetic/`` written by ``python -m transfer.synthetic_voc``; VOC's 20 class names, year
  2007 (so the evaluator uses VOC2007's 11-point AP, as for ``voc_2007_test``).  The same images
  as COCO instances with polygon masks: ``coco_synthetic_trainval``, ``coco_synthetic_test``.
"""
import os

from .compat import ensure_detectron2

ensure_detectron2()

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from detectron2.data.datasets.pascal_voc import CLASS_NAMES, register_pascal_voc  # noqa: E402

SYNTHETIC_DIRNAME = "VOC_synthetic"
SYNTHETIC_SPLITS = ("trainval", "test")


def datasets_root() -> str:
    return os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))


def register_synthetic(root: str | None = None) -> str:
    """(Re-)register ``voc_synthetic_{trainval,test}`` (VOC XML) and ``coco_synthetic_{trainval,test}``
    (COCO JSON with polygon masks, same images) for ``root/VOC_synthetic``; returns that folder."""
    dirname = os.path.join(root or datasets_root(), SYNTHETIC_DIRNAME)
    for split in SYNTHETIC_SPLITS:
        for name in (f"voc_synthetic_{split}", f"coco_synthetic_{split}"):
            if name in DatasetCatalog.list():
                meta = MetadataCatalog.get(name)
                if dirname in (meta.get("dirname"), meta.get("image_root")):
                    continue
                DatasetCatalog.remove(name)
                MetadataCatalog.remove(name)
            if name.startswith("voc"):
                register_pascal_voc(name, dirname, split, 2007, CLASS_NAMES)
            else:
                register_coco_instances(name, {}, os.path.join(dirname, "annotations",
                                                               f"instances_{split}.json"),
                                        os.path.join(dirname, "JPEGImages"))
    return dirname


register_synthetic()
