"""transfer/: detectron2 configs, converter, evaluators and trainer, with the real detectron2.

Needs detectron2 (``bash transfer/setup_detectron2.sh``).  Outside CI the tests skip when it is
absent; in CI (``CI`` set) its absence fails every test.  The checkpoint is a real one, written by
the pretrainer's CLI (ResNet-50, 1 epoch on 32 synthetic images).  About 2-3 min on 2 CPU cores.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
CONFIGS = REPO / "transfer" / "configs"

from transfer.compat import detectron2_available  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ helpers, any import mode
from conftest_ablations import slurm_cluster  # noqa: E402,F401  (real single-node SLURM fixture)

HAVE_D2 = detectron2_available()


@pytest.fixture(autouse=True)
def _need_detectron2():
    if not HAVE_D2:
        msg = "detectron2 is not installed (bash transfer/setup_detectron2.sh)"
        if os.environ.get("CI"):
            pytest.fail(msg + " -- required in CI", pytrace=False)
        pytest.skip(msg)


def _cli(*args, env=None, timeout=600):
    e = dict(os.environ)
    e.update(env or {})
    e.setdefault("OMP_NUM_THREADS", "2")
    return subprocess.run([PY, "-m", *args], cwd=REPO, env=e, capture_output=True, text=True,
                          timeout=timeout)


def _error_lines(stderr: str) -> list[str]:
    """stderr lines that are not library warnings (torch/detectron2 emit FutureWarnings)."""
    return [l for l in stderr.splitlines() if l.strip() and "warn" not in l.lower()]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def moco_ckpt(tmp_path_factory):
    """A real R50 MoCo checkpoint written by the pretrainer CLI (1 epoch, 32 synthetic images)."""
    out = tmp_path_factory.mktemp("pretrain") / "run"
    r = _cli("pretrain", "--preset", "tiny", "--dataset", "synthetic", "--arch", "resnet50",
             "--no-cifar-stem", "--stem-stride", "1", "--in-chans", "3", "--width", "64", "--image-size", "64",
             "--epochs", "1", "--subset", "32", "--batch-size", "8", "--bn-splits", "2",
             "--moco-k", "16", "--knn-every", "0", "--no-progress", "--output", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "checkpoint.pth").is_file()
    return out / "checkpoint.pth"


@pytest.fixture(scope="session")
def converted(moco_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("convert") / "moco_r50.pkl"
    r = _cli("transfer.convert", str(moco_ckpt), str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "265 backbone tensors matched, 0 unused, 0 missing, 0 mismatched" in r.stdout
    return out


@pytest.fixture(scope="session")
def d2_root(tmp_path_factory):
    """$DETECTRON2_DATASETS with a synthetic VOC set (8 trainval, 7 test images)."""
    root = tmp_path_factory.mktemp("d2datasets")
    r = _cli("transfer.synthetic_voc", str(root / "VOC_synthetic"), "--images", "8",
             "--test-images", "7", "--seed", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "8 trainval + 7 test images" in r.stdout
    return root


@pytest.fixture(scope="session")
def d2_small(tmp_path_factory):
    """A smaller synthetic set for the trainer runs (6 trainval, 2 test images): CPU inference of
    R50-C4 costs seconds per image."""
    root = tmp_path_factory.mktemp("d2small")
    r = _cli("transfer.synthetic_voc", str(root / "VOC_synthetic"), "--images", "6",
             "--test-images", "2", "--seed", "2")
    assert r.returncode == 0, r.stderr[-2000:]
    return root


# --------------------------------------------------------------------------- configs

MOCO_INPUT = {"MODEL.PIXEL_MEAN": [123.675, 116.280, 103.530],
              "MODEL.PIXEL_STD": [58.395, 57.120, 57.375],
              "MODEL.RESNETS.STRIDE_IN_1X1": False, "INPUT.FORMAT": "RGB"}
C4_BASE = {"MODEL.META_ARCHITECTURE": "GeneralizedRCNN", "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
           "MODEL.RPN.POST_NMS_TOPK_TEST": 1000, "MODEL.ROI_HEADS.NAME": "Res5ROIHeadsExtraNorm",
           "MODEL.BACKBONE.FREEZE_AT": 0, "MODEL.RESNETS.NORM": "SyncBN",
           "TEST.PRECISE_BN.ENABLED": True, "SOLVER.IMS_PER_BATCH": 16, "SOLVER.BASE_LR": 0.02}
VOC = {**C4_BASE, "MODEL.MASK_ON": False, "MODEL.ROI_HEADS.NUM_CLASSES": 20,
       "INPUT.MIN_SIZE_TRAIN": tuple(range(480, 801, 32)), "INPUT.MIN_SIZE_TEST": 800,
       "DATASETS.TRAIN": ("voc_2007_trainval", "voc_2012_trainval"),
       "DATASETS.TEST": ("voc_2007_test",), "SOLVER.STEPS": (18000, 22000),
       "SOLVER.MAX_ITER": 24000, "SOLVER.WARMUP_ITERS": 100}
COCO = {"MODEL.MASK_ON": True, "INPUT.MIN_SIZE_TRAIN": (640, 672, 704, 736, 768, 800),
        "INPUT.MIN_SIZE_TEST": 800, "DATASETS.TRAIN": ("coco_2017_train",),
        "DATASETS.TEST": ("coco_2017_val",), "SOLVER.IMS_PER_BATCH": 16, "SOLVER.BASE_LR": 0.02,
        "TEST.PRECISE_BN.ENABLED": True, "MODEL.BACKBONE.FREEZE_AT": 0,
        "MODEL.RESNETS.NORM": "SyncBN", "MODEL.RESNETS.DEPTH": 50}
COCO_C4 = {**C4_BASE, **COCO, "SOLVER.STEPS": (120000, 160000), "SOLVER.MAX_ITER": 180000}
FPN = {**COCO, "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone", "MODEL.FPN.NORM": "SyncBN",
       "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
       "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"]}
FPN_1X = {**FPN, "SOLVER.STEPS": (60000, 80000), "SOLVER.MAX_ITER": 90000}
FPN_2X = {**FPN, "SOLVER.STEPS": (120000, 160000), "SOLVER.MAX_ITER": 180000}
MSRA = {"MODEL.WEIGHTS": "detectron2://ImageNetPretrained/MSRA/R-50.pkl",
        "INPUT.FORMAT": "BGR", "MODEL.RESNETS.STRIDE_IN_1X1": True}
MOCO = {**MOCO_INPUT, "MODEL.WEIGHTS": "See Instructions"}
SCRATCH = {**MOCO_INPUT, "MODEL.WEIGHTS": ""}

EXPECTED = {
    "pascal_voc_R_50_C4_24k.yaml": {**VOC, **MSRA},
    "pascal_voc_R_50_C4_24k_moco.yaml": {**VOC, **MOCO},
    "pascal_voc_R_50_C4_24k_scratch.yaml": {**VOC, **SCRATCH},
    "coco_R_50_C4_2x.yaml": {**COCO_C4, **MSRA},
    "coco_R_50_C4_2x_moco.yaml": {**COCO_C4, **MOCO},
    "coco_R_50_C4_2x_scratch.yaml": {**COCO_C4, **SCRATCH},
    "coco_R_50_FPN_1x.yaml": {**FPN_1X, **MSRA},
    "coco_R_50_FPN_1x_moco.yaml": {**FPN_1X, **MOCO},
    "coco_R_50_FPN_1x_scratch.yaml": {**FPN_1X, **SCRATCH},
    "coco_R_50_FPN_2x.yaml": {**FPN_2X, **MSRA},
    "coco_R_50_FPN_2x_moco.yaml": {**FPN_2X, **MOCO},
    "coco_R_50_FPN_2x_scratch.yaml": {**FPN_2X, **SCRATCH},
    "synthetic_voc_R_50_C4_moco.yaml": {
        **{k: v for k, v in VOC.items()
           if not k.startswith(("INPUT.MIN", "DATASETS", "SOLVER", "MODEL.RPN"))},
        **MOCO, "DATASETS.TRAIN": ("voc_synthetic_trainval",),
        "DATASETS.TEST": ("voc_synthetic_test",), "INPUT.MIN_SIZE_TRAIN": (128,),
        "INPUT.MIN_SIZE_TEST": 128, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 64,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0, "MODEL.RPN.PRE_NMS_TOPK_TEST": 600,
        "MODEL.RPN.POST_NMS_TOPK_TEST": 50,
        "SOLVER.IMS_PER_BATCH": 2, "DATALOADER.NUM_WORKERS": 0},
    "synthetic_coco_R_50_C4_moco.yaml": {
        **{k: v for k, v in COCO_C4.items()
           if not k.startswith(("INPUT.MIN", "DATASETS", "SOLVER", "MODEL.RPN"))},
        **MOCO, "DATASETS.TRAIN": ("coco_synthetic_trainval",),
        "DATASETS.TEST": ("coco_synthetic_test",), "MODEL.ROI_HEADS.NUM_CLASSES": 20,
        "INPUT.MIN_SIZE_TEST": 128, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 64,
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0, "MODEL.RPN.POST_NMS_TOPK_TEST": 50,
        "SOLVER.IMS_PER_BATCH": 2, "DATALOADER.NUM_WORKERS": 0},
}


def _get(cfg, dotted):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def test_every_config_is_pinned():
    on_disk = {p.name for p in CONFIGS.glob("*.yaml")} - {"Base-RCNN-C4-BN.yaml",
                                                           "Base-RCNN-FPN-BN.yaml"}
    assert on_disk == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_values(name):
    """Each YAML loads through get_cfg().merge_from_file and holds the paper's values."""
    from transfer.d2config import load_cfg

    cfg = load_cfg(CONFIGS / name)
    for key, want in EXPECTED[name].items():
        got = _get(cfg, key)
        if isinstance(want, (list, tuple)):
            assert len(got) == len(want), (key, got)
            for g, w in zip(got, want):
                assert g == pytest.approx(w) if isinstance(w, float) else g == w, (key, got)
        elif isinstance(want, float):
            assert got == pytest.approx(want), (key, got)
        else:
            assert got == want, (key, got)


def test_norm_is_one_override_and_builds():
    """SyncBN (paper) <-> naiveSyncBN (later official) is one key; both build the R50-C4 model with
    the extra norm after res5."""
    import torch.nn as nn
    from detectron2.layers import NaiveSyncBatchNorm
    from detectron2.modeling import build_model
    from transfer.d2config import load_cfg

    for norm, cls in (("SyncBN", nn.SyncBatchNorm), ("naiveSyncBN", NaiveSyncBatchNorm)):
        cfg = load_cfg(CONFIGS / "pascal_voc_R_50_C4_24k_moco.yaml",
                       ["MODEL.RESNETS.NORM", norm, "MODEL.DEVICE", "cpu"])
        model = build_model(cfg)
        assert type(model.roi_heads).__name__ == "Res5ROIHeadsExtraNorm"
        assert isinstance(model.roi_heads.res5.norm, cls)
        assert model.roi_heads.res5.norm.num_features == 2048
        assert isinstance(model.backbone.stem.conv1.norm, cls)
        # FREEZE_AT 0: the stem trains too
        assert all(p.requires_grad for p in model.backbone.parameters())


def test_bad_input_is_one_error_line(tmp_path):
    r = _cli("transfer.train", "--config", str(CONFIGS / "pascal_voc_R_50_C4_24k_moco.yaml"),
             "--weights", "x.pkl", "--opts", "MODEL.NOT_A_KEY", "1")
    assert r.returncode == 2
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: bad config") and "NOT_A_KEY" in lines[0]
    r = _cli("transfer.train", "--config", str(tmp_path / "missing.yaml"), "--weights", "x.pkl")
    assert r.returncode == 2 and _error_lines(r.stderr) == [f"error: config not found: {tmp_path}/missing.yaml"]
    r = _cli("transfer.train", "--config", str(CONFIGS / "pascal_voc_R_50_C4_24k_moco.yaml"),
             "--weights", "x.pkl", env={"DETECTRON2_DATASETS": str(tmp_path / "nowhere")})
    assert r.returncode == 2 and _error_lines(r.stderr) == [
        f"error: dataset voc_2007_test: {tmp_path}/nowhere/VOC2007 not found (set DETECTRON2_DATASETS "
        "to the folder holding VOC2007/, VOC2012/, coco/ or VOC_synthetic/)"]
    r = _cli("transfer.train", "--config", str(CONFIGS / "pascal_voc_R_50_C4_24k_moco.yaml"))
    assert r.returncode == 2 and "needs --weights" in r.stderr


# --------------------------------------------------------------------------- converter

def _backbone_keys(sd_keys):
    return [k for k in sd_keys if k.startswith("encoder_q.") and not k.startswith("encoder_q.fc.")]


def test_convert_roundtrip_identical_values(moco_ckpt, converted):
    """Every backbone tensor of encoder_q lands in detectron2's R50-C4 model, unchanged."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model
    from transfer.convert import rename
    from transfer.d2config import load_cfg

    ck = torch.load(moco_ckpt, map_location="cpu", weights_only=False)
    sd = ck["state_dict"]
    with open(converted, "rb") as f:
        pkl = pickle.load(f)
    assert pkl["__author__"] == "MOCO" and pkl["matching_heuristics"] is True
    q = _backbone_keys(sd)
    assert len(q) == 318 and len(pkl["model"]) == 318  # R50: 265 params/stats + 53 counters
    assert not any(k.startswith(("stem.fc", "fc")) for k in pkl["model"])

    cfg = load_cfg(CONFIGS / "pascal_voc_R_50_C4_24k_moco.yaml", ["MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    incompatible = DetectionCheckpointer(model).load(str(converted))
    assert incompatible is not None
    own = model.state_dict()
    differs_from_key_encoder = 0
    checked = 0
    for k in q:
        if k.endswith("num_batches_tracked"):
            continue
        d2 = rename(k[len("encoder_q."):])
        target = ("roi_heads." if d2.startswith("res5.") else "backbone.") + d2
        assert target in own, target
        assert torch.equal(own[target], sd[k].float()), target
        differs_from_key_encoder += not torch.equal(own[target], sd["encoder_k." + k[10:]].float())
        checked += 1
    assert checked == 265
    assert differs_from_key_encoder > 0  # the query encoder, not the momentum encoder

    # the backbone and res5 are fully initialized from the .pkl; only detection heads are new
    from transfer.convert import verify
    for cfg_name in ("pascal_voc_R_50_C4_24k_moco.yaml", "coco_R_50_FPN_1x_moco.yaml"):
        r = verify(converted, CONFIGS / cfg_name)
        assert r == {"matched": 265, "unused": [], "missing": [], "mismatched": []}, cfg_name


def test_convert_accepts_official_format(moco_ckpt, converted, tmp_path):
    import torch

    ck = torch.load(moco_ckpt, map_location="cpu", weights_only=False)
    official = {"epoch": 200, "arch": "resnet50",
                "state_dict": {"module." + k: v for k, v in ck["state_dict"].items()
                               if k.startswith(("encoder_q.", "encoder_k.", "queue"))}}
    src = tmp_path / "moco_v1_200ep_pretrain.pth.tar"
    torch.save(official, src)
    out = tmp_path / "official.pkl"
    r = _cli("transfer.convert", str(src), str(out), "--no-verify")
    assert r.returncode == 0, r.stderr[-2000:]
    a = pickle.load(open(out, "rb"))["model"]
    b = pickle.load(open(converted, "rb"))["model"]
    assert sorted(a) == sorted(b)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_convert_refuses_bad_checkpoints(moco_ckpt, tmp_path):
    import torch

    ck = torch.load(moco_ckpt, map_location="cpu", weights_only=False)
    no_q = {**ck, "state_dict": {k: v for k, v in ck["state_dict"].items()
                                 if not k.startswith("encoder_q.")}}
    vit = {"format": "mocobench-v1", "arch": "vit_small",
           "state_dict": {"encoder_q.patch_embed.proj.weight": torch.zeros(384, 3, 16, 16)}}
    vit_no_arch = {"state_dict": {"encoder_q.blocks.0.attn.qkv.weight": torch.zeros(3, 3)}}
    cifar = {**ck, "state_dict": {**ck["state_dict"],
                                  "encoder_q.conv1.weight": torch.zeros(64, 3, 3, 3)}}
    cases = {"no_q": (no_q, "no query encoder"), "vit": (vit, "is not a ResNet"),
             "vit_no_arch": (vit_no_arch, "not a torchvision ResNet"),
             "cifar": (cifar, "7x7 conv on 3 RGB channels")}
    for name, (obj, msg) in cases.items():
        src = tmp_path / f"{name}.pth"
        torch.save(obj, src)
        out = tmp_path / f"{name}.pkl"
        r = _cli("transfer.convert", str(src), str(out), "--no-verify")
        lines = _error_lines(r.stderr)
        assert r.returncode == 2 and len(lines) == 1 and msg in lines[0], (name, r.stderr)
        assert not out.exists()
    (tmp_path / "corrupt.pth").write_bytes(b"\x80\x04not a checkpoint")
    r = _cli("transfer.convert", str(tmp_path / "corrupt.pth"), str(tmp_path / "c.pkl"))
    assert r.returncode == 2 and len(_error_lines(r.stderr)) == 1
    assert "cannot read checkpoint" in r.stderr
    r = _cli("transfer.convert", str(tmp_path / "missing.pth"), str(tmp_path / "m.pkl"))
    assert r.returncode == 2 and _error_lines(r.stderr) == [
        f"error: checkpoint not found: {tmp_path}/missing.pth"]


# --------------------------------------------------------------------------- evaluators

def _register(d2_root):
    from transfer import datasets

    datasets.register_synthetic(str(d2_root))
    from detectron2.data import DatasetCatalog
    return DatasetCatalog.get("voc_synthetic_test")


def _as_predictions(dicts, scale_w=1.0, drop_class=None):
    """Ground-truth boxes as detector outputs; ``scale_w`` shrinks each box's width (IoU = scale_w)."""
    import torch
    from detectron2.structures import Boxes, BoxMode, Instances

    outputs = []
    for d in dicts:
        anns = [a for a in d["annotations"] if a["category_id"] != drop_class]
        boxes = torch.tensor([BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS)
                              for a in anns], dtype=torch.float32).reshape(-1, 4)
        boxes[:, 2] = boxes[:, 0] + scale_w * (boxes[:, 2] - boxes[:, 0])
        inst = Instances((d["height"], d["width"]))
        inst.pred_boxes = Boxes(boxes)
        inst.scores = torch.ones(len(anns))
        inst.pred_classes = torch.tensor([a["category_id"] for a in anns], dtype=torch.int64)
        if anns and "segmentation" in anns[0]:
            from pycocotools import mask as mask_util
            h, w = d["height"], d["width"]
            masks = [mask_util.decode(mask_util.merge(mask_util.frPyObjects(a["segmentation"], h, w)))
                     for a in anns]
            inst.pred_masks = torch.from_numpy(np.stack(masks)).bool()
        outputs.append({"instances": inst})
    return outputs


def _evaluate(evaluator, dicts, outputs):
    evaluator.reset()
    for d, o in zip(dicts, outputs):
        evaluator.process([{"image_id": d["image_id"], "height": d["height"],
                            "width": d["width"]}], [o])
    return evaluator.evaluate()


def test_voc_evaluator_ground_truth_as_predictions(d2_root):
    from detectron2.evaluation import PascalVOCDetectionEvaluator

    dicts = _register(d2_root)
    assert {a["category_id"] for d in dicts for a in d["annotations"]} == set(range(20))
    ev = PascalVOCDetectionEvaluator("voc_synthetic_test")
    r = _evaluate(ev, dicts, _as_predictions(dicts))["bbox"]
    assert r["AP"] == pytest.approx(100) and r["AP50"] == pytest.approx(100)
    assert r["AP75"] == pytest.approx(100)
    # one class never predicted: its AP is 0, the mean over 20 classes 95
    r = _evaluate(ev, dicts, _as_predictions(dicts, drop_class=3))["bbox"]
    assert r["AP50"] == pytest.approx(95) and r["AP"] == pytest.approx(95)
    # boxes at IoU 0.625: true positives at IoU thresholds 0.50, 0.55, 0.60 only -> AP 3/10
    r = _evaluate(ev, dicts, _as_predictions(dicts, scale_w=0.625))["bbox"]
    assert r["AP50"] == pytest.approx(100) and r["AP75"] == pytest.approx(0)
    assert r["AP"] == pytest.approx(30)


def test_coco_evaluator_pure_python(d2_root, tmp_path):
    """COCOEvaluator as the trainer builds it (use_fast_impl=False: pycocotools' Python COCOeval)
    on the synthetic COCO annotations: ground-truth boxes and masks as predictions give AP 100,
    boxes at IoU 0.625 give AP50 100, AP75 0, AP 30 (3 of 10 IoU thresholds)."""
    from detectron2.data import DatasetCatalog
    from transfer.d2config import load_cfg
    from transfer.train import build_trainer_class

    _register(d2_root)
    dicts = DatasetCatalog.get("coco_synthetic_test")
    assert {a["category_id"] for d in dicts for a in d["annotations"]} == set(range(20))
    cfg = load_cfg(CONFIGS / "synthetic_coco_R_50_C4_moco.yaml", ["OUTPUT_DIR", str(tmp_path)])
    ev = build_trainer_class().build_evaluator(cfg, "coco_synthetic_test", str(tmp_path / "ev"))
    assert type(ev).__name__ == "COCOEvaluator" and ev._use_fast_impl is False
    r = _evaluate(ev, dicts, _as_predictions(dicts))
    for task in ("bbox", "segm"):
        for k in ("AP", "AP50", "AP75"):
            assert r[task][k] == pytest.approx(100), (task, k, r[task])
    r = _evaluate(ev, dicts, _as_predictions(dicts, scale_w=0.625))["bbox"]
    assert r["AP50"] == pytest.approx(100) and r["AP75"] == pytest.approx(0)
    assert r["AP"] == pytest.approx(30)


# --------------------------------------------------------------------------- trainer

def test_trainer_cpu_synthetic_voc(moco_ckpt, d2_small, tmp_path):
    """3 iterations of R50-C4 (SyncBN, extra norm, precise BN) from the pretrainer's checkpoint
    (converted on the fly) on CPU, VOC evaluation, one row in the results table."""
    results = tmp_path / "results.csv"
    out = tmp_path / "run"
    r = _cli("transfer.train", "--config", str(CONFIGS / "synthetic_voc_R_50_C4_moco.yaml"),
             "--weights", str(moco_ckpt), "--trial", "2", "--output", str(out),
             "--opts", "SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2",
             "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64", "TEST.PRECISE_BN.NUM_ITER", "1",
             env={"DETECTRON2_DATASETS": str(d2_small), "MOCOBENCH_RESULTS": str(results)})
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["status"] == "done" and summary["task"] == "voc"
    # the backbone came from the checkpoint, verified
    assert (out / "backbone.pkl").is_file() and (out / "model_final.pth").is_file()
    assert "Running precise-BN for 1 iterations" in r.stdout + r.stderr
    iters = [json.loads(l) for l in (out / "metrics.json").read_text().splitlines()
             if '"iteration"' in l]
    assert [m["iteration"] for m in iters if "total_loss" in m][-1] == 2
    assert all(math.isfinite(m["total_loss"]) for m in iters if "total_loss" in m)

    from ablations import results as rt
    df = rt.read(results)
    assert len(df) == 1
    row = df.iloc[0]
    assert row["grid"] == "transfer" and row["status"] == "done" and row["task"] == "voc"
    assert row["config"] == "synthetic_voc_R_50_C4_moco.yaml"
    assert row["weights"] == str(moco_ckpt) and int(row["trial"]) == 2 and int(row["seed"]) == 2
    for k in ("AP50", "AP", "AP75"):
        assert 0.0 <= float(row[k]) <= 100.0 and float(row[k]) == pytest.approx(summary[k])
    assert float(row["AP50"]) >= float(row["AP"]) >= 0.0
    assert 0.5 < float(row["step_time_s"]) < 120.0
    from transfer.train import run_id
    cfgp = CONFIGS / "synthetic_voc_R_50_C4_moco.yaml"
    opts = ["SOLVER.MAX_ITER", "3", "SOLVER.IMS_PER_BATCH", "2",
            "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64", "TEST.PRECISE_BN.NUM_ITER", "1"]
    assert row["run_id"] == run_id(cfgp, opts, moco_ckpt, 2)
    print(f"\nR50-C4 synthetic VOC on CPU: {float(row['step_time_s']):.2f} s/iteration")


def test_trainer_cpu_synthetic_coco_masks(converted, d2_small, tmp_path):
    """Mask R-CNN R50-C4 (the COCO recipe) for 2 iterations from the converted .pkl on CPU, COCO
    evaluation; the row carries box AP and mask AP (APm)."""
    results = tmp_path / "results.csv"
    r = _cli("transfer.train", "--config", str(CONFIGS / "synthetic_coco_R_50_C4_moco.yaml"),
             "--weights", str(converted), "--output", str(tmp_path / "run"),
             "--opts", "SOLVER.MAX_ITER", "2", "TEST.PRECISE_BN.NUM_ITER", "1",
             env={"DETECTRON2_DATASETS": str(d2_small), "MOCOBENCH_RESULTS": str(results)})
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "Evaluation results for segm" in r.stdout + r.stderr
    from ablations import results as rt
    row = rt.read(results).iloc[0]
    assert row["status"] == "done" and row["task"] == "coco" and int(row["trial"]) == 0
    for k in ("AP50", "AP", "AP75", "APm"):
        assert 0.0 <= float(row[k]) <= 100.0, (k, row[k])


def test_launch_debug_executor_eval_only(converted, d2_small, tmp_path):
    """submitit launcher: config x checkpoint x trials jobs; rows land in the results table;
    a second launch skips jobs already done."""
    results = tmp_path / "results.csv"
    env = {"DETECTRON2_DATASETS": str(d2_small), "MOCOBENCH_RESULTS": str(results)}
    args = ("transfer.launch", "--executor", "debug", "--folder", str(tmp_path / "logs"),
            "--configs", str(CONFIGS / "synthetic_voc_R_50_C4_moco.yaml"),
            "--weights", str(converted), "--trials", "1", "--eval-only",
            "--output-root", str(tmp_path / "runs"))
    r = _cli(*args, env=env)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "1 job(s) to run" in r.stdout
    from ablations import results as rt
    df = rt.read(results)
    assert len(df) == 1 and df.iloc[0]["status"] == "done" and df.iloc[0]["task"] == "voc"
    assert 0.0 <= float(df.iloc[0]["AP50"]) <= 100.0
    r = _cli(*args, env=env)
    assert r.returncode == 0 and "0 job(s) to run" in r.stdout


@pytest.mark.slurm
def test_launch_slurm_eval_only(slurm_cluster, converted, d2_small, tmp_path):
    """The same job through a real SLURM (tests/conftest_ablations.py's single-node cluster):
    one CPU job (--gpus 0), waited for, its row in the results table."""
    results = tmp_path / "results.csv"
    env = {"DETECTRON2_DATASETS": str(d2_small), "MOCOBENCH_RESULTS": str(results),
           "SLURM_CONF": slurm_cluster}
    r = _cli("transfer.launch", "--executor", "slurm", "--gpus", "0", "--cpus-per-task", "1",
             "--timeout-min", "15", "--folder", str(tmp_path / "logs"), "--wait",
             "--configs", str(CONFIGS / "synthetic_voc_R_50_C4_moco.yaml"),
             "--weights", str(converted), "--trials", "1", "--eval-only",
             "--output-root", str(tmp_path / "runs"), env=env, timeout=900)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    assert "submitted: " in r.stdout
    from ablations import results as rt
    df = rt.read(results)
    assert len(df) == 1 and df.iloc[0]["status"] == "done" and df.iloc[0]["task"] == "voc"
    assert 0.0 <= float(df.iloc[0]["AP50"]) <= 100.0
