"""The mechanisms' maths against hand computations on tiny batches."""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from pretrain.models.end_to_end import EndToEnd
from pretrain.models.memory_bank import MemoryBank
from pretrain.models.moco import MoCo
from pretrain.models.mechanism import accuracy, info_nce
from pretrain import config
from pretrain.config import MECHANISMS
from pretrain.models import build  # noqa: F401  (imports the three implementations)
from pretrain.models.registry import REGISTRY
from pretrain.models.encoder import backbone_forward, build_encoder, feature_dim
from pretrain.base.errors import UserError
from reports import data


class Lin(nn.Module):
    """A linear 'encoder' so that every number can be computed by hand."""

    def __init__(self, d_in=6, dim=4):
        super().__init__()
        self.fc = nn.Linear(d_in, dim)
        self.register_buffer("counter", torch.zeros(1))

    def forward(self, x):
        return self.fc(x)


def moco(K=5, m=0.9, T=0.5, dim=4):
    torch.manual_seed(0)
    return MoCo(Lin(dim=dim), dim=dim, K=K, m=m, T=T, shuffle="off")


def test_registry_names_the_papers_mechanisms():
    """One list: the config's mechanisms in the paper's order, each with its config rules, and the registry's
    class under each name; config validation, --mechanism's choices and the reports' order are that list."""
    assert list(MECHANISMS) == ["moco", "end_to_end", "memory_bank"]
    assert list(REGISTRY) == ["moco", "end_to_end", "memory_bank"]
    assert [REGISTRY[n] for n in MECHANISMS] == [MoCo, EndToEnd, MemoryBank]
    assert [REGISTRY[n].name for n in MECHANISMS] == ["moco", "end_to_end", "memory_bank"]
    assert config.STR_CHOICES["mechanism"] == ("moco", "end_to_end", "memory_bank")
    assert data.MECHANISMS == ("moco", "end_to_end", "memory_bank")
    assert "momentum_encoder" not in MECHANISMS and len(MECHANISMS) == 3
    with pytest.raises(KeyError):
        REGISTRY["momentum_encoder"]
    with pytest.raises(KeyError, match="not a declared mechanism"):
        REGISTRY.register("momentum_encoder")
    with pytest.raises(KeyError, match="registered twice"):
        REGISTRY.register("moco")(EndToEnd)
    with pytest.raises(UserError, match="mechanism must be one of moco, end_to_end, memory_bank, got 'x'"):
        config.validate(config.Config(mechanism="x"))


def test_each_mechanism_declares_its_own_rules():
    """Validation asks the config's mechanism for its rules; a key one mechanism alone reads (bank_init) is out of
    the others' run identity."""
    assert MECHANISMS.own_keys_of_others("moco") == ("bank_init",)
    assert MECHANISMS.own_keys_of_others("memory_bank") == ()
    e2e = config.Config(mechanism="end_to_end", moco_k=64, batch_size=32)
    assert MECHANISMS["end_to_end"].problems(e2e) == [
        "end_to_end: the dictionary is the mini-batch, so moco_k must equal batch_size (got K=64, batch=32); "
        "sweep K by sweeping batch_size"]
    assert MECHANISMS["moco"].problems(e2e) == []
    bank = config.Config(mechanism="memory_bank", moco_k=4096, subset=1000, bank_init="features")
    assert [p.split(":")[0] for p in MECHANISMS["memory_bank"].problems(bank)] == [
        "moco_k (K) 4096 is larger than subset 1000 (the pretraining images) for mechanism memory_bank",
        "bank_init features needs a fixed-size dataset (one pass over tensors), not imagefolder"]
    with pytest.raises(UserError, match="moco_k must equal batch_size"):
        config.validate(e2e)
    a = config.Config(mechanism="moco", bank_init="features", dataset="synthetic")
    b = config.Config(mechanism="moco", bank_init="random", dataset="synthetic")
    assert config.config_hash(a, 1) == config.config_hash(b, 1)
    assert config.config_hash(config.Config(mechanism="memory_bank", bank_init="features", dataset="synthetic"), 1) != \
        config.config_hash(config.Config(mechanism="memory_bank", bank_init="random", dataset="synthetic"), 1)


def test_mechanism_names_need_no_torch():
    """pretrain.config.mechanisms, pretrain.config and the reports' data module read the names without torch."""
    import subprocess
    import sys
    code = ("import sys; import pretrain.config.mechanisms as M, pretrain.config as C; "
            "C.load_config('tiny', {'mechanism': 'memory_bank', 'moco_k': 512}); "
            "print(list(M.MECHANISMS), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["['moco',", "'end_to_end',", "'memory_bank']", "False"]


def test_key_encoder_is_a_frozen_copy():
    mo = moco()
    for (nq, pq), (nk, pk) in zip(mo.encoder_q.named_parameters(), mo.encoder_k.named_parameters()):
        assert nq == nk and torch.equal(pq, pk) and pq is not pk
        assert pq.requires_grad and not pk.requires_grad


def test_momentum_update_matches_hand_computation_and_skips_buffers():
    mo = moco(m=0.9)
    with torch.no_grad():
        for p in mo.encoder_q.parameters():
            p.add_(1.0)
        mo.encoder_q.counter.fill_(7)
    k0 = copy.deepcopy(mo.encoder_k.state_dict())
    q0 = copy.deepcopy(mo.encoder_q.state_dict())
    mo._momentum_update_key_encoder()
    for name in ("fc.weight", "fc.bias"):
        expect = 0.9 * k0[name] + 0.1 * q0[name]
        assert torch.allclose(mo.encoder_k.state_dict()[name], expect, atol=1e-7)
        assert not torch.allclose(mo.encoder_k.state_dict()[name], q0[name])
    assert mo.encoder_k.counter.item() == 0        # buffers are not averaged (official code)


def test_momentum_extremes():
    mo = moco(m=0.0)
    with torch.no_grad():
        mo.encoder_q.fc.weight.add_(3.0)
    mo._momentum_update_key_encoder()
    assert torch.equal(mo.encoder_k.fc.weight, mo.encoder_q.fc.weight)      # m = 0: key encoder = query encoder
    mo = moco(m=1.0)
    before = mo.encoder_k.fc.weight.clone()
    with torch.no_grad():
        mo.encoder_q.fc.weight.add_(3.0)
    mo._momentum_update_key_encoder()
    assert torch.equal(mo.encoder_k.fc.weight, before)                     # m = 1: frozen


def test_queue_is_fifo_and_wraps_around():
    mo = moco(K=5)
    keys = [F.normalize(torch.randn(3, 4), dim=1) for _ in range(3)]
    mo._dequeue_and_enqueue(keys[0])
    assert torch.equal(mo.queue[:, :3], keys[0].T) and int(mo.queue_ptr) == 3
    mo._dequeue_and_enqueue(keys[1])               # 3 + 3 > 5: wraps around, oldest replaced first
    assert torch.equal(mo.queue[:, 3:5], keys[1][:2].T)
    assert torch.equal(mo.queue[:, 0], keys[1][2])
    assert torch.equal(mo.queue[:, 1:3], keys[0][1:].T) and int(mo.queue_ptr) == 1
    mo._dequeue_and_enqueue(keys[2])
    assert torch.equal(mo.queue[:, 1:4], keys[2].T) and int(mo.queue_ptr) == 4
    # the queue now holds the 5 newest keys, in order of arrival: k1[1], k1[2]... (k1[0] is out)
    newest = torch.cat([keys[1][1:], keys[2]])
    order = [(4 + i) % 5 for i in range(5)]
    assert torch.equal(mo.queue[:, order].T, newest)


def test_more_keys_than_K_keeps_the_newest():
    mo = moco(K=2)
    k = F.normalize(torch.randn(3, 4), dim=1)
    mo._dequeue_and_enqueue(k)
    assert torch.equal(mo.queue.T, k[1:]) and int(mo.queue_ptr) == 0


def test_moco_logits_equal_manual_einsum_and_step_order():
    mo = moco(K=5, m=0.9, T=0.5)
    with torch.no_grad():
        mo.encoder_q.fc.weight.add_(0.5)            # make q and k encoders differ
    xq, xk = torch.randn(3, 6), torch.randn(3, 6)
    queue0 = mo.queue.clone()
    wq = copy.deepcopy(mo.encoder_q.state_dict())
    wk = copy.deepcopy(mo.encoder_k.state_dict())
    logits, labels = mo(xq, xk)
    # by hand: momentum update FIRST, then keys from the updated key encoder
    wk_new = {n: 0.9 * wk[n] + 0.1 * wq[n] for n in ("fc.weight", "fc.bias")}
    q = F.normalize(xq @ wq["fc.weight"].T + wq["fc.bias"], dim=1)
    k = F.normalize(xk @ wk_new["fc.weight"].T + wk_new["fc.bias"], dim=1)
    l_pos = (q * k).sum(1, keepdim=True)
    l_neg = q @ queue0                               # the queue BEFORE this batch is enqueued
    expect = torch.cat([l_pos, l_neg], 1) / 0.5
    assert logits.shape == (3, 6) and torch.allclose(logits, expect, atol=1e-6)
    assert torch.equal(labels, torch.zeros(3, dtype=torch.long))
    assert torch.allclose(mo.queue[:, :3], k.T, atol=1e-6)              # enqueued after the logits
    assert logits.requires_grad and not mo.queue.requires_grad


def test_info_nce_is_cross_entropy_with_label_zero():
    logits = torch.randn(4, 9)
    labels = torch.zeros(4, dtype=torch.long)
    manual = -(logits[:, 0] - torch.logsumexp(logits, 1)).mean()
    assert torch.allclose(info_nce(logits, labels), manual, atol=1e-6)
    assert torch.allclose(info_nce(logits, labels), F.cross_entropy(logits, labels))


def test_pretext_accuracy():
    logits = torch.tensor([[5.0, 1, 2, 3, 4, 0], [1.0, 5, 4, 3, 2, 0], [0.0, 1, 2, 3, 4, 5]])
    acc1, acc5 = accuracy(logits, torch.zeros(3, dtype=torch.long))
    assert acc1 == pytest.approx(100 / 3) and acc5 == pytest.approx(200 / 3)


def test_end_to_end_against_hand_reference():
    torch.manual_seed(0)
    e2e = EndToEnd(Lin(), T=0.2, shuffle="off")
    assert not hasattr(e2e, "encoder_k") and not hasattr(e2e, "queue")
    assert not hasattr(e2e, "K") and not hasattr(e2e, "m")      # K = the batch; no key encoder, no m
    xq, xk = torch.randn(4, 6), torch.randn(4, 6)
    logits, labels = e2e(xq, xk)
    W, b = e2e.encoder_q.fc.weight, e2e.encoder_q.fc.bias
    q = F.normalize(xq @ W.T + b, dim=1)
    k = F.normalize(xk @ W.T + b, dim=1)          # keys from the SAME encoder
    sim = q @ k.T
    for i in range(4):
        negs = [sim[i, j] for j in range(4) if j != i]            # K - 1 = 3 negatives: the other keys
        expect = torch.stack([sim[i, i], *negs]) / 0.2
        assert torch.allclose(logits[i], expect, atol=1e-6)
    assert logits.shape == (4, 4)
    # gradient flows through the keys too
    info_nce(logits, labels).backward()
    g_full = W.grad.clone()
    W.grad = None
    q2 = F.normalize(xq @ W.T + b, dim=1)
    k2 = (F.normalize(xk @ W.T + b, dim=1)).detach()
    s2 = q2 @ k2.T
    l2 = torch.cat([s2.diagonal()[:, None], s2[~torch.eye(4, dtype=torch.bool)].view(4, 3)], 1) / 0.2
    info_nce(l2, labels).backward()
    assert not torch.allclose(g_full, W.grad, atol=1e-6)


def test_memory_bank_against_hand_reference():
    torch.manual_seed(0)
    mb = MemoryBank(Lin(), dim=4, K=3, T=0.1, num_images=10, bank_m=0.5)
    assert not hasattr(mb, "encoder_k") and mb.bank.shape == (10, 4) and not hasattr(mb, "m")
    assert torch.allclose(mb.bank.norm(dim=1), torch.ones(10))
    bank0 = mb.bank.clone()
    x, idx = torch.randn(2, 6), torch.tensor([7, 2])
    state = torch.get_rng_state()
    neg_idx = torch.randint(0, 10, (3,))               # the negatives the module will draw
    torch.set_rng_state(state)
    logits, labels = mb(x, None, idx)
    q = F.normalize(mb.encoder_q(x), dim=1).detach()
    expect = torch.cat([(q * bank0[idx]).sum(1, keepdim=True), q @ bank0[neg_idx].T], 1) / 0.1
    assert torch.allclose(logits, expect, atol=1e-5)
    # bank update: v <- normalize(0.5 v + 0.5 q) for the batch's images only
    for i, j in enumerate(idx.tolist()):
        assert torch.allclose(mb.bank[j], F.normalize(0.5 * bank0[j] + 0.5 * q[i], dim=0), atol=1e-6)
    others = [j for j in range(10) if j not in idx.tolist()]
    assert torch.equal(mb.bank[others], bank0[others])
    with pytest.raises(ValueError, match="indices"):
        mb(x, None, None)


def test_memory_bank_coefficient_is_a_config_value():
    mb = MemoryBank(Lin(), dim=4, K=3, num_images=5, bank_m=0.0)
    x, idx = torch.randn(1, 6), torch.tensor([3])
    mb(x, None, idx)
    assert torch.allclose(mb.bank[3], F.normalize(mb.encoder_q(x), dim=1)[0].detach(), atol=1e-6)


@pytest.mark.parametrize("mlp", [False, True])
def test_heads(mlp):
    enc = build_encoder("resnet18", dim=128, mlp=mlp)
    assert enc(torch.randn(2, 3, 64, 64)).shape == (2, 128)
    keys = set(enc.state_dict())
    if mlp:   # official v2: fc = Sequential(Linear(512, 512), ReLU, Linear(512, 128))
        assert {"fc.0.weight", "fc.2.weight"} <= keys and enc.fc[0].weight.shape == (512, 512)
        assert isinstance(enc.fc[1], nn.ReLU) and enc.fc[2].weight.shape == (128, 512)
    else:
        assert "fc.weight" in keys and enc.fc.weight.shape == (128, 512)
    assert build_encoder("resnet50", mlp=mlp).fc is not None and feature_dim(build_encoder("resnet50")) == 2048


def test_small_scale_encoder_options():
    enc = build_encoder("resnet18", dim=32, cifar_stem=True, in_chans=1, width=16)
    assert enc.conv1.weight.shape == (16, 1, 3, 3) and enc.conv1.stride == (1, 1)
    assert isinstance(enc.maxpool, nn.Identity)
    assert enc.layer4[0].conv1.out_channels == 128 and feature_dim(enc) == 128
    assert backbone_forward(enc, torch.randn(2, 1, 28, 28)).shape == (2, 128)
    # torchvision's parameter names are kept (official tools and the detectron2 converter read them)
    assert set(enc.state_dict()) == set(build_encoder("resnet18", dim=32).state_dict())
    with pytest.raises(Exception, match="unknown arch 'vgg16'"):
        build_encoder("vgg16")


def test_stem_stride_halves_the_first_stage_map():
    """stem_stride 2: the 3x3 stem conv has stride 2, so a 28x28 image gives a 14x14 first stage (and 2x2 at
    layer4 instead of 4x4); the parameters are the same tensors as the stride-1 stem's (same names, shapes)."""
    from pretrain.config import load_config
    from pretrain.models.encoder import encoder_for
    s1 = build_encoder("resnet18", dim=32, cifar_stem=True, in_chans=1, width=16)
    s2 = build_encoder("resnet18", dim=32, cifar_stem=True, in_chans=1, width=16, stem_stride=2)
    assert s2.conv1.stride == (2, 2) and isinstance(s2.maxpool, nn.Identity)
    x = torch.randn(2, 1, 28, 28)
    assert s1.layer1(s1.relu(s1.bn1(s1.conv1(x)))).shape[-2:] == (28, 28)
    assert s2.layer1(s2.relu(s2.bn1(s2.conv1(x)))).shape[-2:] == (14, 14)
    assert {k: v.shape for k, v in s1.state_dict().items()} == {k: v.shape for k, v in s2.state_dict().items()}
    assert backbone_forward(s2, x).shape == (2, 128)
    assert encoder_for(load_config("tiny", {"stem_stride": 2})).conv1.stride == (2, 2)
    with pytest.raises(UserError, match="stem_stride must be 1 or 2, got 3"):
        load_config("tiny", {"stem_stride": 3})
    with pytest.raises(UserError, match="stem_stride 2 needs cifar_stem"):
        load_config("imagenet", {"stem_stride": 2})


def test_constructors_take_only_what_each_mechanism_uses():
    with pytest.raises(TypeError, match="'K'"):
        EndToEnd(Lin(), K=4)
    with pytest.raises(TypeError, match="'m'"):
        EndToEnd(Lin(), m=0.999)
    with pytest.raises(TypeError, match="'m'"):
        MemoryBank(Lin(), num_images=4, m=0.999)
    with pytest.raises(TypeError, match="'shuffle'"):
        MemoryBank(Lin(), num_images=4, shuffle="split")       # no key encoder: nothing to shuffle
    with pytest.raises(TypeError, match="'num_images'"):
        MoCo(Lin(), num_images=4)


@pytest.mark.parametrize("mechanism", ["moco", "end_to_end", "memory_bank"])
def test_build_pretrainer_is_the_config_s_module(mechanism):
    """build_pretrainer(cfg): the encoder of encoder_for(cfg) (same RNG draws, so a seed gives the Trainer's
    initialisation), the BN layout of shuffle_bn (tiny: split BN of 8 sub-batches in one process), then the
    dictionary drawn right after the encoder, each mechanism reading only its keys."""
    from pretrain.models.build import build_pretrainer
    from pretrain.config import load_config
    from pretrain.models.encoder import encoder_for
    from pretrain.models.shuffle_bn import SplitBatchNorm
    over = {"mechanism": mechanism, "arch": "resnet18", "width": 4, "moco_dim": 8, "moco_t": 0.3,
            "moco_m": 0.9, "bank_m": 0.25, "bank_init": "random"}     # a bank of any size (features: the data's)
    over.update({"batch_size": 32} if mechanism == "end_to_end" else {"moco_k": 48})
    cfg = load_config("tiny", over)
    torch.manual_seed(3)
    model = build_pretrainer(cfg, num_images=100)
    after = torch.randn(1)                                   # the global RNG's next draw after the build
    torch.manual_seed(3)
    enc = encoder_for(cfg)
    draws = {"moco": lambda: F.normalize(torch.randn(8, 48), dim=0),
             "memory_bank": lambda: F.normalize(torch.randn(100, 8), dim=1), "end_to_end": lambda: None}
    dictionary = draws[mechanism]()
    assert torch.equal(after, torch.randn(1))                # the same number of draws, in the same order
    assert type(model).name == mechanism and model.T == 0.3
    sd = model.encoder_q.state_dict()
    assert sd.keys() == enc.state_dict().keys()
    assert all(torch.equal(sd[k], v) for k, v in enc.state_dict().items())
    bns = [m for m in model.encoder_q.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(isinstance(m, SplitBatchNorm) and m.num_splits == 8 for m in bns)
    if mechanism == "moco":
        assert (model.K, model.m) == (48, 0.9) and torch.equal(model.queue, dictionary)
        assert model.key_shuffle.mode == "split"
    elif mechanism == "memory_bank":
        assert (model.K, model.bank_m) == (48, 0.25) and torch.equal(model.bank, dictionary)
    else:
        assert not hasattr(model, "K") and not hasattr(model, "m") and model.key_shuffle.mode == "split"
