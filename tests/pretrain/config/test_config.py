"""Presets pin the paper's numbers; bad config input is one clear error line and a non-zero exit."""
import dataclasses
import re
import subprocess

import pytest

from conftest import PY, ROOT
from pretrain.config import Config, config_hash, load_config
from pretrain.base.errors import UserError
from pretrain.eval.protocol import LinclsConfig


def test_imagenet_preset_is_the_paper_v1():
    c = load_config("imagenet")
    assert (c.arch, c.moco_dim, c.mlp, c.aug_plus, c.cos) == ("resnet50", 128, False, False, False)
    assert (c.moco_k, c.moco_m, c.moco_t) == (65536, 0.999, 0.07)
    assert (c.lr, c.batch_size, c.effective_lr) == (0.03, 256, 0.03)
    assert (c.momentum, c.weight_decay) == (0.9, 1e-4)
    assert (c.epochs, c.schedule) == (200, [120, 160])
    assert (c.mechanism, c.image_size, c.dataset) == ("moco", 224, "imagefolder")
    # the dataclass defaults are the paper's too
    assert Config().to_dict() == {**c.to_dict(), "dataset": Config().dataset}


def test_imagenet_v2_preset():
    c = load_config("imagenet-v2")
    assert (c.mlp, c.moco_t, c.aug_plus, c.cos) == (True, 0.2, True, True)
    assert (c.moco_k, c.moco_m, c.lr, c.batch_size, c.epochs) == (65536, 0.999, 0.03, 256, 200)


def test_cifar10_preset_is_the_official_demo():
    c = load_config("cifar10")
    assert (c.arch, c.cifar_stem, c.moco_k, c.moco_m, c.moco_t) == ("resnet18", True, 4096, 0.99, 0.1)
    assert (c.lr, c.batch_size, c.weight_decay, c.cos, c.epochs) == (0.06, 512, 5e-4, True, 200)
    assert (c.knn_k, c.knn_t, c.bn_splits) == (200, 0.1, 8)


def test_tiny_preset_runs_fashion_mnist():
    c = load_config("tiny")
    assert (c.dataset, c.in_chans, c.arch, c.cifar_stem) == ("fashion_mnist", 1, "resnet18", True)
    assert (c.moco_m, c.moco_t, c.cos) == (0.999, 0.1, True)        # the paper's m


def test_linear_protocol_defaults():
    d = LinclsConfig()
    assert (d.lr, d.weight_decay, d.epochs, d.schedule, d.momentum, d.batch_size) == (30.0, 0.0, 100, [60, 80],
                                                                                      0.9, 256)


def test_pinned_torch_pair():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"torch==2.14.0"' in text and '"torchvision==0.29.0"' in text


def test_overrides_and_linear_scaling():
    c = load_config("imagenet", {"batch_size": 1024, "lr_scaling": "linear"})
    assert c.effective_lr == pytest.approx(0.12)
    assert load_config("imagenet", {"moco_k": "4096"}).moco_k == 4096


@pytest.mark.parametrize("over,msg", [
    ({"moco_kk": 1}, "unknown config key 'moco_kk'.*did you mean 'moco_k'"),
    ({"moco_k": 0}, "moco_k .*>= 1"),
    ({"moco_m": 1.5}, r"moco_m .*\[0, 1\]"),
    ({"moco_t": 0}, "moco_t"),
    ({"mechanism": "simclr"}, "mechanism must be one of"),
    ({"device": "gpu"}, "device must be one of auto, cpu, cuda, got 'gpu'"),     # not silently the CPU
    ({"lr_scaling": "sqrt"}, "lr_scaling must be one of none, linear, got 'sqrt'"),
    ({"eval_split": "train"}, "eval_split must be one of test, val, got 'train'"),
    ({"moco_k": "many"}, "cannot read 'many' as int"),
    ({"mechanism": "end_to_end", "moco_k": 4096, "batch_size": 256}, "moco_k must equal batch_size"),
])
def test_config_errors(over, msg):
    with pytest.raises(UserError, match=msg):
        load_config("imagenet", over)


def test_unknown_preset_and_key_in_yaml(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'nope'"):
        load_config("nope")
    f = tmp_path / "mine.yaml"
    f.write_text("_base_: tiny\nmomentun: 0.9\n")
    with pytest.raises(UserError, match="unknown config key 'momentun'.*did you mean 'momentum'"):
        load_config(str(f))
    f.write_text("_base_: tiny\nmoco_k: 512\n")
    assert load_config(str(f)).moco_k == 512 and load_config(str(f)).dataset == "fashion_mnist"


def test_end_to_end_dictionary_is_the_batch():
    assert load_config("tiny", {"mechanism": "end_to_end"}).moco_k == load_config("tiny").batch_size
    c = load_config("tiny", {"mechanism": "end_to_end", "moco_k": 512})
    assert (c.moco_k, c.batch_size) == (512, 512)
    c = load_config("tiny", {"mechanism": "end_to_end", "batch_size": 128})
    assert (c.moco_k, c.batch_size) == (128, 128)


def test_hash_ignores_where_it_runs():
    a = load_config("tiny")
    b = load_config("tiny", {"workers": 7, "device": "cpu"})
    c = load_config("tiny", {"moco_k": 1024})
    assert config_hash(a, 1) == config_hash(b, 1) != config_hash(c, 1)
    assert re.fullmatch(r"[0-9a-f]{12}", config_hash(a, 1))


@pytest.mark.parametrize("args,msg", [
    (["--moco-m", "2"], "moco_m (m) must be in [0, 1]"),
    (["--moco-k", "-5"], "moco_k (K) must be >= 1"),
    (["--preset", "tiny", "--data", "/nonexistent/fmnist"], "Fashion-MNIST not found in /nonexistent/fmnist"),
    (["--preset", "cifar10", "--data", "/nonexistent/c10"], "data path does not exist"),
    (["--dataset", "imagefolder", "--data", "/nonexistent/in"], "data path does not exist"),
])
def test_cli_errors_are_one_line(args, msg, env, tmp_path):
    r = subprocess.run([PY, "-m", "pretrain", *args, "--output", str(tmp_path / "r")], capture_output=True,
                       text=True, env=env, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and msg in lines[0], r.stderr
    assert not (tmp_path / "r" / "checkpoint.pth").exists()


def test_resume_and_the_run_hash_use_one_list_of_keys():
    """A key changes the run's hash exactly when a checkpoint of the old value cannot be resumed with the new
    one (epochs excepted: a run may be continued for more epochs): both read run_identity."""
    from pretrain.config import FIELD_NAMES, RESUME_MAY_CHANGE, RUNTIME_KEYS, resume_mismatch
    base = load_config("tiny")
    other = {"workers": 3, "device": "cpu", "threads": 2, "data": "/elsewhere", "dist_timeout_min": 9,
             "knn_monitor": False, "knn_every": 2, "knn_k": 7, "knn_t": 0.5, "knn_feature": "head",
             "knn_subset": 9, "fail_loss_frac": 0.5, "fail_below_init": True, "eval_split": "val",
             "fail_loss_rise": 0.2, "epochs": 9, "moco_k": 1024,
             "moco_m": 0.5, "mechanism": "memory_bank", "seed": 1, "lr": 0.5, "schedule": [1, 2]}
    ignored, refused = [], []
    for k in FIELD_NAMES:
        if k not in other:
            continue
        changed = dataclasses.replace(base, **{k: other[k]})
        in_hash = config_hash(changed, 1) != config_hash(base, 1)
        mismatch = resume_mismatch(base.to_dict(), 1, changed, 1)
        # the memory bank reads bank_init (tiny: features), which no other mechanism's identity holds
        brings = ["bank_init"] if k == "mechanism" else []
        assert mismatch == ([] if (not in_hash or k in RESUME_MAY_CHANGE) else [k] + brings), k
        (refused if in_hash else ignored).append(k)
    assert set(ignored) == set(other) - {"epochs", "moco_k", "moco_m", "mechanism", "seed", "lr", "schedule"}
    assert set(RUNTIME_KEYS) <= set(ignored) and "epochs" in refused


def test_resume_mismatch_world_size_defaults_and_dataset_folder():
    from pretrain.config import resume_mismatch
    cfg = load_config("tiny")
    assert resume_mismatch(cfg.to_dict(), 2, cfg, 1) == ["world size 2 -> 1"]
    assert resume_mismatch(cfg.to_dict(), None, cfg, 4) == []                  # not recorded: not compared
    saved = {k: v for k, v in cfg.to_dict().items() if k != "bank_m"}          # a key the checkpoint does not hold
    saved["retired_key"] = 1                                                   # a key no longer known
    assert resume_mismatch(saved, 1, cfg, 1) == []                             # bank_m at its default 0.5
    assert resume_mismatch(saved, 1, dataclasses.replace(cfg, bank_m=0.9), 1) == ["bank_m"]
    a = load_config("imagenet", {"data": "/datasets/imagenet"})
    b = dataclasses.replace(a, data="/datasets/imagenet100")                   # another folder, another dataset
    assert resume_mismatch(a.to_dict(), 1, b, 1) == ["dataset_path"]
    assert config_hash(a, 1) != config_hash(b, 1)
