"""A small synthetic dataset in PASCAL VOC format, for tests and demos of the transfer protocol.

    python -m transfer.synthetic_voc OUT [--images N] [--test-images M] [--seed S]

Writes ``OUT/JPEGImages/*.jpg`` (simple coloured shapes on a noisy background),
``OUT/Annotations/*.xml`` (VOC fields: size, object/name, pose, truncated, difficult,
bndbox with 1-based inclusive pixel coordinates), ``OUT/ImageSets/Main/{trainval,test}.txt``, and
the same objects as COCO instances with polygon masks, ``OUT/annotations/instances_{split}.json``
(registered as ``coco_synthetic_trainval`` / ``_test``, for the Mask R-CNN / COCOEvaluator path).
Objects carry VOC's 20 class names; class c is drawn as shape ``c % 4`` (rectangle, ellipse,
triangle, cross) in colour ``c // 4`` (5 colours), so the classes are visually distinct.  Training
images hold 1-3 objects, test images 3; classes are assigned round-robin within each split, so
every class occurs in the test split when ``--test-images`` >= 7 (21 objects).  For detectron2 put OUT at
``$DETECTRON2_DATASETS/VOC_synthetic`` (registered as ``voc_synthetic_trainval`` / ``_test``).
The folder is built next to OUT and renamed into place, so OUT is never half-written.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from pretrain.base.errors import cli, report
from pretrain.base.fileio import atomic_dir

CLASS_NAMES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
    "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # detectron2.data.datasets.pascal_voc.CLASS_NAMES (kept here so generation needs no detectron2)
COLOURS = ((220, 40, 40), (40, 180, 60), (40, 80, 220), (230, 200, 30), (200, 60, 200))
WIDTH, HEIGHT = 192, 144


def _polygon(c: int, box) -> list[float]:
    """The object's outline in continuous image coordinates (COCO ``segmentation``); the drawn
    pixels are this polygon filled."""
    x0, y0, x1, y1 = box
    X1, Y1 = x1 + 1, y1 + 1  # pixel (x1, y1) spans [x1, x1 + 1)
    shape = c % 4
    if shape == 0:
        pts = [(x0, y0), (X1, y0), (X1, Y1), (x0, Y1)]
    elif shape == 1:
        cx, cy, rx, ry = (x0 + X1) / 2, (y0 + Y1) / 2, (X1 - x0) / 2, (Y1 - y0) / 2
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        pts = list(zip(cx + rx * np.cos(t), cy + ry * np.sin(t)))
    elif shape == 2:
        pts = [(x0, Y1), ((x0 + X1) / 2, y0), (X1, Y1)]
    else:
        wx, wy = (X1 - x0) / 3, (Y1 - y0) / 3
        pts = [(x0 + wx, y0), (X1 - wx, y0), (X1 - wx, y0 + wy), (X1, y0 + wy), (X1, Y1 - wy),
               (X1 - wx, Y1 - wy), (X1 - wx, Y1), (x0 + wx, Y1), (x0 + wx, Y1 - wy), (x0, Y1 - wy),
               (x0, y0 + wy), (x0 + wx, y0 + wy)]
    return [round(float(v), 2) for p in pts for v in p]


def _draw(draw: ImageDraw.ImageDraw, c: int, box) -> None:
    poly = _polygon(c, box)
    draw.polygon(list(zip(poly[0::2], poly[1::2])), fill=COLOURS[c // 4])


def _coco(ids_objects, split: str) -> dict:
    """COCO instances JSON of a split (category ids 1..20 in VOC order, polygon masks)."""
    images, anns = [], []
    for img_id, (fileid, objects) in enumerate(ids_objects, start=1):
        images.append({"id": img_id, "file_name": f"{fileid}.jpg", "width": WIDTH, "height": HEIGHT})
        for c, b in objects:
            w, h = b[2] - b[0] + 1, b[3] - b[1] + 1
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": c + 1,
                         "bbox": [b[0], b[1], w, h], "area": float(w * h), "iscrowd": 0,
                         "segmentation": [_polygon(c, b)]})
    return {"info": {"description": f"mocobench synthetic VOC, {split}"}, "images": images,
            "annotations": anns,
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASS_NAMES)]}


def _xml(fileid: str, objects) -> str:
    objs = "".join(
        f"  <object>\n    <name>{escape(CLASS_NAMES[c])}</name>\n    <pose>Unspecified</pose>\n"
        f"    <truncated>0</truncated>\n    <difficult>0</difficult>\n    <bndbox>\n"
        f"      <xmin>{b[0] + 1}</xmin>\n      <ymin>{b[1] + 1}</ymin>\n"
        f"      <xmax>{b[2] + 1}</xmax>\n      <ymax>{b[3] + 1}</ymax>\n    </bndbox>\n  </object>\n"
        for c, b in objects)
    return (f"<annotation>\n  <folder>VOC_synthetic</folder>\n  <filename>{fileid}.jpg</filename>\n"
            f"  <size>\n    <width>{WIDTH}</width>\n    <height>{HEIGHT}</height>\n    <depth>3</depth>\n"
            f"  </size>\n  <segmented>0</segmented>\n{objs}</annotation>\n")


def _image(rng: np.random.Generator, classes) -> tuple[Image.Image, list]:
    bg = rng.integers(90, 160, size=(HEIGHT, WIDTH, 3)).astype(np.uint8)
    img = Image.fromarray(bg)
    draw = ImageDraw.Draw(img)
    objects = []
    for c in classes:  # non-overlapping: one horizontal slot per object
        slot = WIDTH // len(classes)
        x_lo = len(objects) * slot
        w = int(rng.integers(max(16, slot // 2), slot - 4 + 1))
        h = int(rng.integers(32, HEIGHT - 16 + 1))
        x0 = x_lo + int(rng.integers(0, slot - w + 1))
        y0 = int(rng.integers(0, HEIGHT - h + 1))
        box = (x0, y0, x0 + w - 1, y0 + h - 1)  # 0-based inclusive pixels
        _draw(draw, c, box)
        objects.append((c, box))
    return img, objects


def generate(out: str | os.PathLike, images: int = 24, test_images: int | None = None,
             seed: int = 0, force: bool = False) -> dict:
    """Write the dataset; returns ``{"trainval": [ids], "test": [ids], "objects": n}``."""
    out = Path(out)
    if test_images is None:
        test_images = max(7, images // 4)
    if images < 1 or test_images < 1:
        raise ValueError("--images and --test-images must be >= 1")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists (use --force to replace it)")
    with atomic_dir(out) as tmp:
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main", "annotations"):
            (tmp / sub).mkdir(parents=True)
        rng = np.random.default_rng(seed)
        splits = {"trainval": [], "test": []}
        coco = {"trainval": [], "test": []}
        n_obj = 0
        plan = [("trainval", i) for i in range(images)] + [("test", i) for i in range(test_images)]
        counters = {"trainval": 0, "test": 0}
        for split, i in tqdm(plan, desc="synthetic VOC", unit="img", disable=None):
            k = 3 if split == "test" else int(rng.integers(1, 4))
            classes = [(counters[split] + j) % len(CLASS_NAMES) for j in range(k)]
            counters[split] += k
            img, objects = _image(rng, classes)
            fileid = f"{split}_{i:06d}"
            img.save(tmp / "JPEGImages" / f"{fileid}.jpg", quality=95)
            (tmp / "Annotations" / f"{fileid}.xml").write_text(_xml(fileid, objects))
            splits[split].append(fileid)
            coco[split].append((fileid, objects))
            n_obj += len(objects)
        for split, ids in splits.items():
            (tmp / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
            (tmp / "annotations" / f"instances_{split}.json").write_text(
                json.dumps(_coco(coco[split], split)))
    return {**splits, "objects": n_obj}


@cli
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m transfer.synthetic_voc",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output folder, e.g. $DETECTRON2_DATASETS/VOC_synthetic")
    p.add_argument("--images", type=int, default=24, help="trainval images (default 24)")
    p.add_argument("--test-images", type=int, default=None, help="test images (default max(7, N/4))")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")
    a = p.parse_args(argv)
    try:
        r = generate(a.out, a.images, a.test_images, a.seed, a.force)
    except (ValueError, OSError) as e:
        return report(e)
    print(f"wrote {a.out}: {len(r['trainval'])} trainval + {len(r['test'])} test images, "
          f"{r['objects']} objects")
    return 0


if __name__ == "__main__":
    sys.exit(main())
