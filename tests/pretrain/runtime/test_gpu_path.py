"""The GPU cluster path, checked on the CPU wherever its logic runs without CUDA: resume restores RNG states
from CPU tensors whatever the training device, kNN computed by all processes together equals one process's,
``shuffle_bn=split`` refused with several processes, the run identity (world size, ImageNet folder; kNN settings,
threads and workers left out), SLURM's layout read only inside an srun step, the CUDA ordinal of a task, and
crashes recorded as ``error`` (retried), never as a result."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import dist_workers as W  # noqa: E402
from conftest import ROOT, synthetic_overrides  # noqa: E402
from pretrain.runtime import distributed as D  # noqa: E402
from pretrain.config import config_hash, load_config  # noqa: E402
from ablations import executors as X  # noqa: E402
from ablations import submission as SUB  # noqa: E402
from pretrain.base.errors import UserError  # noqa: E402

SLURM_VARS = [k for k in os.environ if k.startswith("SLURM_")] + ["RANK", "WORLD_SIZE", "LOCAL_RANK",
                                                                  "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"]


@pytest.fixture
def clean_env(monkeypatch):
    """No SLURM/torchrun variables during the test, and the environment restored after it (env_from_slurm
    writes os.environ directly: a leaked WORLD_SIZE would make every later run wait for peers)."""
    saved = dict(os.environ)
    for k in SLURM_VARS:
        monkeypatch.delenv(k, raising=False)
    yield monkeypatch
    os.environ.clear()
    os.environ.update(saved)


# -- 1. resume: RNG states from CPU tensors whatever the training device ---------------------------------------
def test_resume_restores_rng_from_cpu_tensors_whatever_the_training_device(tmp_path):
    """A checkpoint loaded with map_location=<training device> would turn the saved CPU RNG state into a CUDA
    tensor on a GPU, which torch.set_rng_state refuses (every requeue would die). With the trainer's device set
    to one that holds no data (meta), resume must still restore weights, optimizer and RNG states."""
    from pretrain.engine.trainer import Trainer
    from pretrain.engine.lifecycle import run
    cfg = load_config("tiny", synthetic_overrides(epochs=1, max_steps=2, threads=1))
    run(cfg, tmp_path, progress=False)
    ck = torch.load(tmp_path / "checkpoint.pth", map_location="cpu", weights_only=False)
    cfg2 = load_config("tiny", synthetic_overrides(epochs=2, max_steps=2, threads=1))
    tr = Trainer(cfg2, tmp_path, progress=False)
    tr.device = torch.device("meta")                 # stands for cuda:N: nothing may be mapped onto it
    torch.manual_seed(12345)
    tr.resume()
    assert tr.start_epoch == 1
    assert torch.equal(torch.get_rng_state(), ck["rng"]["torch"])
    sd = tr.model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in ck["state_dict"].items())


def test_set_rng_state_accepts_states_of_any_device_and_dtype():
    from pretrain.runtime.checkpoint import rng_state, set_rng_state
    s = rng_state()
    a = torch.rand(3)
    s2 = {**s, "torch": s["torch"].to(torch.int64)}          # not a ByteTensor any more (a careless copy)
    set_rng_state(s2)
    assert torch.equal(torch.rand(3), a)


# -- 2. kNN by all ranks, no process holding the whole bank -------------------------------------------------
@pytest.mark.parametrize("world", [2, 3])
def test_knn_sharded_over_processes_equals_one_process(world, tmp_path):
    over = synthetic_overrides(subset=301, knn_k=20, knn_subset=199)       # uneven shards on purpose
    W.knn_sharded(0, 1, str(tmp_path / "one"), over)
    W.launch(W.knn_sharded, world, str(tmp_path / "many"), over)
    one = torch.load(f"{tmp_path / 'one'}.0")
    many = [torch.load(f"{tmp_path / 'many'}.{r}") for r in range(world)]
    assert 10.0 < one < 100.0
    assert many == [one] * world, (one, many)


def test_knn_k_larger_than_a_shard(tmp_path):
    """k = 200 over 3 shards of ~40 images: the merged top-k still equals one process's."""
    over = synthetic_overrides(subset=121, knn_k=200, knn_subset=50, moco_k=64)       # K <= the 121 images
    W.knn_sharded(0, 1, str(tmp_path / "one"), over)
    W.launch(W.knn_sharded, 3, str(tmp_path / "many"), over)
    one = torch.load(f"{tmp_path / 'one'}.0")
    assert [torch.load(f"{tmp_path / 'many'}.{r}") for r in range(3)] == [one] * 3


def test_imagenet_preset_has_no_knn_monitor_and_a_collective_timeout():
    cfg = load_config("imagenet")
    assert cfg.knn_monitor is False and cfg.dist_timeout_min >= 30
    assert load_config("cifar10").knn_monitor is True
    # the process group gets the timeout (gloo here; NCCL on GPUs)
    src = (ROOT / "pretrain" / "runtime" / "distributed.py").read_text()
    assert "timeout=timedelta(minutes=timeout_min)" in src


# -- 4. split with several processes -------------------------------------------------------------------------
def test_split_with_several_processes_is_refused_with_a_hint():
    from pretrain.models.shuffle_bn import resolve_mode
    with pytest.raises(UserError, match="ddp"):
        resolve_mode("split", 2)
    assert resolve_mode("auto", 8) == "ddp" and resolve_mode("auto", 1) == "split"
    assert resolve_mode("off", 4) == "off" and resolve_mode("split", 1) == "split"


# -- 5. run identity ------------------------------------------------------------------------------------------
def test_run_identity_has_world_size_and_imagenet_folder_not_eval_or_runtime_keys(tmp_path):
    base = load_config("imagenet", {"data": str(tmp_path / "imagenet")})
    assert config_hash(base, 1) != config_hash(base, 8)
    other = load_config("imagenet", {"data": str(tmp_path / "imagenet100")})
    assert config_hash(base, 8) != config_hash(other, 8)
    same = load_config("imagenet", {"data": str(tmp_path / "x" / ".." / "imagenet")})
    assert config_hash(base, 8) == config_hash(same, 8)
    for k, v in {"knn_k": 20, "knn_t": 0.07, "knn_every": 1, "knn_monitor": True, "knn_feature": "head",
                 "knn_subset": 10, "fail_loss_frac": 0.9, "threads": 3, "workers": 7, "device": "cpu",
                 "dist_timeout_min": 5}.items():
        assert config_hash(load_config("imagenet", {"data": str(tmp_path / "imagenet"), k: v}), 8) == \
            config_hash(base, 8), k
    for k, v in {"seed": 1, "precision": "bf16", "channels_last": True, "moco_k": 4096}.items():
        assert config_hash(load_config("imagenet", {"data": str(tmp_path / "imagenet"), k: v}), 8) != \
            config_hash(base, 8), k
    # a fixed-size dataset is the same wherever its files are
    a, b = load_config("cifar10", {"data": "/a"}), load_config("cifar10", {"data": "/b"})
    assert config_hash(a, 1) == config_hash(b, 1)


def test_world_size_is_read_from_the_launch(clean_env):
    cfg = load_config("tiny")
    assert D.planned_world_size() == 1
    clean_env.setenv("WORLD_SIZE", "8")
    assert D.planned_world_size() == 8 and config_hash(cfg, D.planned_world_size()) == config_hash(cfg, 8) != \
        config_hash(cfg, 1)


def test_changed_knn_settings_reevaluate_a_finished_run_without_training_it(tmp_path):
    from pretrain.engine.lifecycle import run
    over = synthetic_overrides(epochs=1, max_steps=2, threads=1, knn_monitor=True, knn_k=20)
    s1 = run(load_config("tiny", over), tmp_path, progress=False)
    m1 = (tmp_path / "metrics.jsonl").read_text()
    s2 = run(load_config("tiny", {**over, "knn_k": 3}), tmp_path, progress=False)
    assert s2["run_id"] == s1["run_id"] and s2["eval"]["knn_k"] == 3 and s1["eval"]["knn_k"] == 20
    assert s2["wall_s"] == s1["wall_s"] and s2["images_per_s"] == s1["images_per_s"]   # not trained again
    assert 0 <= s2["knn_acc"] <= 100
    assert json.loads(m1)["loss"] == json.loads((tmp_path / "metrics.jsonl").read_text())["loss"]
    s3 = run(load_config("tiny", {**over, "knn_k": 3}), tmp_path, progress=False)
    assert s3 == s2                                                                       # nothing to do


# -- 6. SLURM: only inside an srun step; the CUDA ordinal of a task -----------------------------------------
SBATCH = {"SLURM_JOB_ID": "77", "SLURM_NTASKS": "8", "SLURM_PROCID": "0", "SLURM_JOB_NODELIST": "node1",
          "SLURM_NODEID": "0", "SLURM_LOCALID": "0", "SLURM_TASKS_PER_NODE": "8"}
SRUN = {**SBATCH, "SLURM_STEP_ID": "0", "SLURM_STEPID": "0", "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2",
        "SLURM_LOCALID": "2", "SLURM_STEP_NODELIST": "node1", "SLURM_STEP_TASKS_PER_NODE": "4"}


def test_batch_script_of_an_8_task_allocation_is_one_process(clean_env):
    for k, v in SBATCH.items():
        clean_env.setenv(k, v)
    clean_env.setenv("SLURM_STEP_ID", "4294967294")        # the batch step's id, as SLURM sets it
    assert not D.in_srun_step() and D.planned_world_size() == 1
    D.env_from_slurm()
    assert "RANK" not in os.environ and "WORLD_SIZE" not in os.environ


def test_srun_task_exports_torchrun_variables(clean_env):
    for k, v in SRUN.items():
        clean_env.setenv(k, v)
    assert D.in_srun_step() and D.planned_world_size() == 4 and D.local_world_size() == 4
    D.env_from_slurm()
    assert (os.environ["RANK"], os.environ["WORLD_SIZE"], os.environ["LOCAL_RANK"]) == ("2", "4", "2")
    assert os.environ["MASTER_ADDR"] == "node1" and os.environ["MASTER_PORT"] == str(20000 + 77)
    assert D.workers_per_process(32) == 8                    # the node's 32 workers shared by 4 processes


def test_plain_pretrain_in_an_sbatch_script_runs_alone(tmp_path, env):
    """`python -m pretrain` in `sbatch --ntasks 8` used to wait for 7 peers forever."""
    e = {k: v for k, v in env.items() if k not in SLURM_VARS}
    e.update(SBATCH)
    e["SLURM_STEP_ID"] = "4294967294"
    over = synthetic_overrides(epochs=1, max_steps=1, threads=1)
    argv = [sys.executable, "-m", "pretrain", "--preset", "tiny", "--output", str(tmp_path), "--no-progress"]
    for k, v in over.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    r = subprocess.run(argv, cwd=ROOT, env=e, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((tmp_path / "summary.json").read_text())["world_size"] == 1


def test_cuda_ordinal_of_a_task():
    assert D.cuda_index(5, 1) == 0          # --gpus-per-task 1: each task sees its own GPU as cuda:0
    assert D.cuda_index(5, 8) == 5          # the node's 8 GPUs visible to every task
    with pytest.raises(UserError, match="one process per GPU"):
        D.cuda_index(3, 2)
    with pytest.raises(UserError, match="no CUDA device"):
        D.cuda_index(0, 0)


# -- 7. transient errors are no result ----------------------------------------------------------------------
def test_error_kinds():
    from ablations.job import error_kind
    assert error_kind(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")) == "oom"
    assert error_kind(RuntimeError("NCCL error in: ProcessGroupNCCL.cpp, unhandled system error")) == "distributed"
    assert error_kind(UserError("data path does not exist")) == "user"
    assert error_kind(ZeroDivisionError("x")) == "crash"


def test_a_crashed_job_is_an_error_and_the_next_plan_retries_it(tmp_path, monkeypatch):
    import ablations.job
    from ablations import launcher as L
    from ablations import results
    from ablations.job import GridJob
    from conftest_ablations import write_grid

    res = tmp_path / "results.csv"
    gfile = write_grid(tmp_path / "g.yaml", "t_oom", [{"moco_m": 0.9}])
    grid, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    p = planned[0]

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    monkeypatch.setattr(ablations.job, "run", oom)
    job = GridJob(grid["name"], "tiny", p.cfg, str(p.run_dir), ["knn"], str(res), "sha", p.run_id)
    row = X.make_executor("debug", tmp_path / "submitit", {}).submit(job).result()
    assert row["status"] == "error" and row["error_kind"] == "oom" and "out of memory" in row["reason"]
    s = json.loads((p.run_dir / "summary.json").read_text())
    assert s["status"] == "error" and s["error_kind"] == "oom"
    assert results.read(res).set_index("run_id").loc[p.run_id, "status"] == "error"
    _, again = L.plan(str(gfile), "tiny", tmp_path / "runs")
    assert again[0].state == "todo" and "retrying after error (oom)" in again[0].note
    monkeypatch.undo()
    row = X.make_executor("debug", tmp_path / "submitit2", {}).submit(job).result()   # the retry runs for real
    assert row["status"] == "done" and 0 <= float(row["knn_acc"]) <= 100
    assert results.read(res).set_index("run_id").loc[p.run_id, "status"] == "done"


def test_a_lost_job_is_an_error_not_a_failed_result(tmp_path):
    from ablations import launcher as L
    from conftest_ablations import write_grid
    gfile = write_grid(tmp_path / "g.yaml", "t_lost", [{"moco_m": 0.9}])
    grid, planned = L.plan(str(gfile), "tiny", tmp_path / "runs")
    planned[0].run_dir.mkdir(parents=True)
    row = SUB._job_failed_row(grid, "tiny", planned[0], "job 12: node failure")
    assert row["status"] == "error" and row["error_kind"] == "lost"
    assert json.loads((planned[0].run_dir / "summary.json").read_text())["status"] == "error"


# -- mixed precision and channels_last (the same step on CPU and GPU) ------------------------------------------
@pytest.mark.parametrize("mechanism", ["moco", "end_to_end", "memory_bank"])
def test_autocast_covers_the_encoders_only(mechanism):
    """bf16 autocast: the encoders' outputs are bf16 inside, but q, k, the logits, the loss and the
    queue/bank stay fp32."""
    from pretrain.models.build import build_pretrainer
    from pretrain.models.mechanism import info_nce
    over = synthetic_overrides(mechanism=mechanism, precision="bf16", channels_last=True)
    if mechanism == "end_to_end":
        over.pop("moco_k")
    cfg = load_config("tiny", over)
    torch.manual_seed(0)
    model = build_pretrainer(cfg, 64)                       # the config's bf16 and channels_last, split BN
    assert model.amp_dtype == torch.bfloat16 and model.encoder_q.conv1.weight.is_contiguous(
        memory_format=torch.channels_last)
    seen = []
    model.encoder_q.fc.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.rand(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    buf = "bank" if mechanism == "memory_bank" else ("queue" if mechanism == "moco" else None)
    logits, labels = model(x, x.clone(), torch.arange(8))
    loss = info_nce(logits, labels)
    loss.backward()
    assert seen and seen[0] == torch.bfloat16                      # the encoder ran in bf16
    assert logits.dtype == torch.float32 and loss.dtype == torch.float32 and torch.isfinite(loss)
    if buf:
        assert getattr(model, buf).dtype == torch.float32
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())


def test_fp16_is_refused_on_the_cpu():
    with pytest.raises(UserError, match="fp16 needs CUDA"):
        load_config("tiny", {"precision": "fp16", "device": "cpu"})


def test_bf16_channels_last_run_trains_and_resumes_bit_identical(tmp_path):
    """A bf16 + channels_last run gives the fp32 run's loss within 0.05 (same seed, same data) and a resumed
    run ends bit-identical to an uninterrupted one."""
    from pretrain.engine.lifecycle import run
    over = synthetic_overrides(precision="bf16", channels_last=True, epochs=2, threads=1, knn_monitor=True)
    a = run(load_config("tiny", over), tmp_path / "a", progress=False)
    f = run(load_config("tiny", {**over, "precision": "fp32", "channels_last": False}), tmp_path / "f",
            progress=False)
    assert a["status"] == f["status"] == "done" and 0 <= a["knn_acc"] <= 100
    assert abs(a["loss"] - f["loss"]) < 0.05 and a["loss"] != f["loss"], (a["loss"], f["loss"])
    run(load_config("tiny", {**over, "epochs": 1}), tmp_path / "b", progress=False)
    (tmp_path / "b" / "summary.json").unlink()
    b = run(load_config("tiny", over), tmp_path / "b", progress=False)
    ka = torch.load(tmp_path / "a" / "checkpoint.pth", weights_only=False)["state_dict"]
    kb = torch.load(tmp_path / "b" / "checkpoint.pth", weights_only=False)["state_dict"]
    assert all(torch.equal(ka[k], kb[k]) for k in ka) and a["loss"] == b["loss"]


def test_a_grid_refuses_two_cells_that_differ_only_in_evaluation_keys(tmp_path):
    from ablations import launcher as L
    from conftest_ablations import write_grid
    gfile = write_grid(tmp_path / "g.yaml", "t_eval_only", [{"moco_m": 0.9}, {"moco_m": 0.9, "knn_k": 7}])
    with pytest.raises(UserError, match="differ only in evaluation keys"):
        L.plan(str(gfile), "tiny", tmp_path / "runs")


@pytest.mark.parametrize("visible,expect", [("3,5", "3,5"), ("", ""), ("0", "0")])
def test_local_executor_keeps_the_gpus_this_process_sees(visible, expect, monkeypatch, tmp_path):
    """submitit's LocalExecutor sets CUDA_VISIBLE_DEVICES to its first gpus_per_node GPUs ("" by default):
    without --gpus-per-node a local grid on a GPU workstation would silently train on the CPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    ex = X.make_executor("local", tmp_path, {})
    n = ex.parameters["gpus_per_node"]
    shown = ex.parameters.get("visible_gpus", ())
    gpus = range(n) if shown == () else shown[:n]
    assert ",".join(map(str, gpus)) == expect and ex.parameters["tasks_per_node"] == 1   # one process per run
    ex2 = X.make_executor("local", tmp_path, {"gpus_per_node": 2})
    assert ex2.parameters["gpus_per_node"] == 2 and ex2.parameters["tasks_per_node"] == 2
