"""The fast step (issue "Cheaper reproductions"): the statistics read to the host every READ_EVERY steps (the NaN
check with them), the images resident on the device in the DataLoader's order, the queue pointer without a host
read, the compiled encoders (``compile``: a run-identity key, eager elsewhere, equal to the eager step within a
stated tolerance), and ``pretrain.bench``'s side-by-side race with the official builder's interface on the CPU."""
import math
import textwrap

import pytest
import torch

from conftest import synthetic_overrides
from pretrain.base.errors import Diverged, UserError
from pretrain.config import config_hash, load_config, resume_mismatch, run_identity
from pretrain.engine import bench
from pretrain.engine import trainer as trainer_mod
from pretrain.engine.trainer import Trainer
from pretrain.models.build import build_pretrainer


def tiny_trainer(tmp_path, **kw) -> Trainer:
    cfg = load_config("tiny", synthetic_overrides(device="cpu", threads=1, **kw))
    return Trainer(cfg, tmp_path, progress=False)


def test_statistics_are_read_every_n_steps_and_at_the_epoch_end(tmp_path, monkeypatch):
    tr = tiny_trainer(tmp_path, subset=512, max_steps=11)
    tr.READ_EVERY = 4
    sizes = []
    read = Trainer.read_stats

    def counting(self, pending, out, epoch, bar):
        sizes.append(len(pending))
        read(self, pending, out, epoch, bar)
    monkeypatch.setattr(Trainer, "read_stats", counting)
    rec = tr.train_epoch(0)
    assert [s for s in sizes if s] == [4, 4, 3]           # 11 steps: two full reads, the rest at the end
    assert len(rec["step_loss"]) == 11
    assert rec["loss"] == pytest.approx(sum(rec["step_loss"]) / 11, abs=1e-4)
    assert 0 <= rec["pretext_acc1"] <= rec["pretext_acc5"] <= 100


def test_a_nan_loss_is_reported_with_its_step_at_the_next_read(tmp_path, monkeypatch):
    tr = tiny_trainer(tmp_path, subset=512, max_steps=8)
    tr.READ_EVERY = 5
    calls = []
    info_nce = trainer_mod.info_nce

    def nan_at_third(logits, labels):
        calls.append(1)
        loss = info_nce(logits, labels)
        return loss * float("nan") if len(calls) == 3 else loss
    monkeypatch.setattr(trainer_mod, "info_nce", nan_at_third)
    with pytest.raises(Diverged, match=r"loss is nan at epoch 1, step 3$"):
        tr.train_epoch(0)
    assert len(calls) == 5                                # detected at the read after step 5, not later


def test_resident_batches_are_the_dataloaders_batches(tmp_path):
    tr = tiny_trainer(tmp_path, subset=256, batch_size=32)
    assert tr.resident is not None and tr.resident.dtype == torch.uint8
    for epoch in (0, 1):
        ours = list(tr.batches(epoch))
        theirs = list(tr.loader(epoch))
        assert len(ours) == len(theirs) == 256 // 32
        for (x, i), (y, j) in zip(ours, theirs):
            assert torch.equal(i, j) and torch.equal(x, y)
    assert not torch.equal(next(iter(tr.batches(0)))[1], next(iter(tr.batches(1)))[1])   # reshuffled


def test_queue_pointer_is_advanced_on_its_buffer(monkeypatch):
    cfg = load_config("tiny", synthetic_overrides(moco_k=96, batch_size=32))
    model = build_pretrainer(cfg, 256)
    monkeypatch.setattr(torch.Tensor, "__int__", lambda self: pytest.fail("the queue pointer was read"))
    for expected in (32, 64, 0, 32):
        model._dequeue_and_enqueue(torch.nn.functional.normalize(torch.randn(32, cfg.moco_dim), dim=1))
        assert model.queue_ptr.tolist() == [expected]


def test_compile_is_a_run_identity_key_hashed_only_when_set():
    eager = load_config("tiny")
    fast = load_config("tiny", {"compile": "default"})
    assert eager.compile == "off"                        # the default is the official eager step
    assert config_hash(eager, 1) == config_hash(load_config("tiny", {"compile": "off"}), 1)
    assert "compile" not in run_identity(eager, 1)
    assert config_hash(fast, 1) != config_hash(eager, 1)
    assert resume_mismatch(eager.to_dict(), 1, fast, 1) == ["compile"]
    with pytest.raises(UserError, match="compile must be one of off, default, reduce-overhead, max-autotune"):
        load_config("tiny", {"compile": "fast"})
    assert load_config("tiny", {"compile": False}).compile == "off"   # YAML's unquoted off


def test_compiled_encoders_are_kept_outside_the_module_tree():
    cfg = load_config("tiny", synthetic_overrides(compile="default"))
    model = build_pretrainer(cfg, 256)
    eager = build_pretrainer(load_config("tiny", synthetic_overrides()), 256)
    assert list(model.state_dict()) == list(eager.state_dict())        # checkpoints keep their names
    assert type(model.encoder_q) is type(eager.encoder_q)               # kNN, bank fill, export: eager
    assert set(model._step_encoders) == {"encoder_q", "encoder_k"}
    step_q = model.step_encoder("encoder_q")
    assert step_q is not model.encoder_q and step_q._orig_mod is model.encoder_q   # shares its parameters
    assert eager.step_encoder("encoder_q") is eager.encoder_q


OFFICIAL_STANDIN = '''
import torch, torch.nn as nn, torch.nn.functional as F
class MoCo(nn.Module):            # the official builder's interface: MoCo(base_encoder, dim, K, m, T, mlp)
    def __init__(self, base_encoder, dim=128, K=65536, m=0.999, T=0.07, mlp=False):
        super().__init__()
        self.T, self.encoder_q = T, base_encoder(num_classes=dim)
        self.register_buffer("queue", F.normalize(torch.randn(dim, K), dim=0))
    def forward(self, im_q, im_k):
        idx = torch.randperm(im_k.shape[0]).cuda()      # as the official _batch_shuffle_ddp
        q = F.normalize(self.encoder_q(im_q), dim=1)
        with torch.no_grad():
            k = F.normalize(self.encoder_q(im_k[idx]), dim=1)[torch.argsort(idx)]
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue], 1) / self.T
        return logits, torch.zeros(logits.shape[0], dtype=torch.long).cuda()
'''


def test_bench_races_ours_against_an_official_builder_on_the_cpu(tmp_path):
    (tmp_path / "moco").mkdir()
    (tmp_path / "moco" / "builder.py").write_text(textwrap.dedent(OFFICIAL_STANDIN))
    cfg = load_config("tiny", synthetic_overrides(device="cpu", threads=1))
    cuda = torch.Tensor.cuda
    r = bench.run_bench(cfg, steps=2, compare=True, official=str(tmp_path), rounds=2)
    assert torch.Tensor.cuda is cuda                     # the identity only while the official forward runs
    v = r["variants_images_per_s"]
    assert list(v) == ["fp32 (config)", "bf16 + channels_last", "official moco/builder.py (fp32)"]
    assert all(x > 0 and math.isfinite(x) for x in v.values())
    assert all(len(rounds) == 2 for rounds in r["variants_rounds"].values())
    assert r["images_per_s"] == v["fp32 (config)"]
    table = bench.format_table(r)
    assert "x official" in table and "median of 2 rounds of 2 steps" in table
    with pytest.raises(UserError, match="no moco/builder.py there"):
        bench.run_bench(cfg, steps=1, official=str(tmp_path / "nowhere"))
    with pytest.raises(UserError, match="times the official MoCo"):
        bench.run_bench(load_config("tiny", synthetic_overrides(mechanism="memory_bank")), steps=1,
                        official=str(tmp_path))


def train_steps(cfg, steps: int) -> tuple[list, dict]:
    """``steps`` training steps of the Trainer's step on a fixed stream of batches (seeded): losses and state."""
    torch.manual_seed(0)
    model = build_pretrainer(cfg, 256)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.effective_lr,
                          momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(steps):
        x = torch.rand(cfg.batch_size, cfg.in_chans, cfg.image_size, cfg.image_size, generator=g)
        im_q, im_k = x + 0.1 * torch.randn(x.shape, generator=g), x + 0.1 * torch.randn(x.shape, generator=g)
        logits, labels = model(im_q, im_k, torch.arange(cfg.batch_size))
        loss = trainer_mod.info_nce(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses, model.state_dict()


def test_the_captured_step_trains_as_the_eager_one(monkeypatch):
    """torch.compile's graph capture (dynamo + AOT autograd, the ``aot_eager`` backend: no code generation)
    must keep what the step mutates: split BN's running statistics, the key encoder's momentum update of shared
    parameters, the queue. 100 steps from the same weights and batches stay equal to 1e-4 (float reordering
    only); inductor's generated kernels are measured by scripts/fast_step_numerics.py."""
    cfg = load_config("tiny", synthetic_overrides(subset=256, batch_size=32, moco_k=128))
    eager_loss, eager_state = train_steps(cfg, 100)
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda m, mode=None: compile_(m, backend="aot_eager"))
    torch._dynamo.reset()
    fast = load_config("tiny", synthetic_overrides(subset=256, batch_size=32, moco_k=128, compile="default"))
    fast_loss, fast_state = train_steps(fast, 100)
    torch._dynamo.reset()
    assert max(abs(a - b) for a, b in zip(eager_loss, fast_loss)) < 1e-4
    for k, v in eager_state.items():
        assert torch.allclose(v.float(), fast_state[k].float(), rtol=1e-3, atol=1e-4), k
    assert int(fast_state["queue_ptr"]) == (100 * 32) % 128 and len(set(fast_loss)) > 90


def test_bench_profiles_the_whole_step():
    table = bench.profile_step(load_config("tiny", synthetic_overrides(device="cpu", threads=1)), steps=2, rows=8)
    lines = table.splitlines()
    assert "Self CPU" in lines[1] and len([x for x in lines if x.strip().startswith("aten::")]) >= 6
    assert "aten::convolution_backward" in table or "aten::mkldnn_convolution" in table
