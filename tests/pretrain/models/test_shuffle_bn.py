"""Shuffle-BN: exact inverses, BN statistics of a query and its positive key from different subsets, and the
2-process (real gloo) versions matching the single-process maths."""
import pytest
import torch
import torch.nn as nn

import dist_workers as W
from pretrain.models.build import REGISTRY
from pretrain.models.encoder import build_encoder
from pretrain.base.errors import UserError
from pretrain.models.shuffle_bn import GlobalBatchNorm, KeyShuffle, SplitBatchNorm, batch_shuffle_single, convert_bn, resolve_mode, split_groups


def test_single_shuffle_is_an_exact_inverse():
    x = torch.randn(16, 3, 4, 4)
    xs, idx_unshuffle = batch_shuffle_single(x)
    assert not torch.equal(xs, x) and torch.equal(xs[idx_unshuffle], x)


def test_split_batchnorm_equals_bn_per_sub_batch():
    torch.manual_seed(0)
    sbn, bn = SplitBatchNorm(3, 4), nn.BatchNorm2d(3)
    x = torch.randn(16, 3, 5, 5)
    y = sbn(x)
    groups = split_groups(16, 4)
    for gi in range(4):
        sel = groups == gi
        assert torch.allclose(y[sel], bn(x[sel]), atol=1e-5)
    assert set(sbn.state_dict()) == set(bn.state_dict())       # checkpoints keep BatchNorm2d's names
    sbn.eval()
    assert torch.allclose(sbn(x), nn.functional.batch_norm(x, sbn.running_mean, sbn.running_var, sbn.weight,
                                                            sbn.bias, False), atol=1e-6)
    with pytest.raises(ValueError, match="not divisible"):
        sbn.train()(torch.randn(6, 3, 2, 2))


def _bn_partners(encoder, x, shuffle_mode, seed=0):
    """For every sample i, the set of samples whose content changes i's output (its BN sub-batch),
    found by perturbing each sample in turn with the same shuffle permutation."""
    ks = KeyShuffle(shuffle_mode)
    with torch.no_grad():
        torch.manual_seed(seed)
        base = ks.encode(encoder, x)
        partners = [set() for _ in range(len(x))]
        for j in range(len(x)):
            xp = x.clone()
            xp[j] += 3.0
            torch.manual_seed(seed)
            out = ks.encode(encoder, xp)
            changed = (out - base).abs().amax(1) > 1e-6
            for i in torch.nonzero(changed).flatten().tolist():
                partners[i].add(j)
    return partners


@pytest.mark.parametrize("mode,cheats", [("split", False), ("off", True)])
def test_query_and_positive_key_bn_statistics_come_from_different_subsets(mode, cheats):
    torch.manual_seed(0)
    enc = convert_bn(nn.Sequential(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(4), nn.Flatten()), mode, 4, 1,
                     torch.device("cpu"))
    assert isinstance(enc[1], SplitBatchNorm)
    x = torch.randn(16, 2, 2, 2)
    q_sets = _bn_partners(enc, x, "off")           # queries are never shuffled
    k_sets = _bn_partners(enc, x, mode)
    assert all(len(s) == 4 for s in q_sets + k_sets)           # 16 samples / 4 splits
    same = [q_sets[i] == k_sets[i] for i in range(16)]
    if cheats:   # no shuffle: each positive key is normalised with exactly its query's sub-batch
        assert all(same)
    else:
        assert not any(same)


def test_modes_resolve():
    assert resolve_mode("auto", 1) == "split" and resolve_mode("auto", 4) == "ddp"
    with pytest.raises(UserError, match="several processes"):
        resolve_mode("ddp", 1)
    enc = build_encoder("resnet18", width=8)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in enc.modules())
    conv = convert_bn(build_encoder("resnet18", width=8), "split", 8, 1, torch.device("cpu"))
    assert sum(isinstance(m, SplitBatchNorm) for m in conv.modules()) == n_bn
    conv = convert_bn(build_encoder("resnet18", width=8), "sync", 8, 2, torch.device("cpu"))
    assert sum(isinstance(m, GlobalBatchNorm) for m in conv.modules()) == n_bn


def test_ddp_shuffle_is_an_exact_inverse_across_two_gloo_processes(tmp_path):
    out = str(tmp_path / "r")
    W.launch(W.shuffle_inverse, 2, out)
    r0, r1 = torch.load(out), torch.load(out + ".1")
    for r in (r0, r1):
        assert torch.equal(r["back"], r["x"])                   # unshuffle(shuffle(x)) == x, per rank
    encoded = torch.cat(r0["key_sets"]).sort().values
    assert torch.equal(encoded, torch.arange(16.0))               # every key is encoded exactly once
    # each rank's key BN batch is a different subset of images than its query BN batch
    q_sets = [set(range(0, 8)), set(range(8, 16))]
    k_sets = [set(s.long().tolist()) for s in r0["key_sets"]]
    for i in range(16):
        qi = q_sets[i // 8]
        ki = next(s for s in k_sets if i in s)
        assert qi != ki


def test_global_batchnorm_matches_one_process_bn(tmp_path):
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4) * 2 + 1
    w, b = torch.rand(3) + 0.5, torch.randn(3)
    out = str(tmp_path / "gbn")
    W.launch(W.global_bn, 2, out, x, w, b)
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(w)
        bn.bias.copy_(b)
    xr = x.clone().requires_grad_(True)
    y = bn(xr)
    parts = [torch.load(f"{out}.{r}") for r in range(2)]
    weights = torch.arange(y[:4].numel()).view_as(y[:4]).float().sin()
    (torch.cat([y[:4] * weights, y[4:] * weights])).sum().backward()
    assert torch.allclose(torch.cat([p["y"] for p in parts]), y.detach(), atol=1e-5)
    assert torch.allclose(torch.cat([p["grads"]["x"] for p in parts]), xr.grad, atol=1e-5)
    assert torch.allclose(parts[0]["grads"]["w"], bn.weight.grad, atol=1e-4)
    assert torch.allclose(parts[0]["grads"]["b"], bn.bias.grad, atol=1e-4)
    assert torch.allclose(parts[0]["running_var"], bn.running_var, atol=1e-5)
    assert torch.allclose(parts[1]["running_mean"], bn.running_mean, atol=1e-6)


@pytest.mark.parametrize("mechanism", ["moco", "end_to_end", "memory_bank"])
def test_two_process_step_matches_single_process_maths(mechanism, tmp_path):
    """With BN over the global batch, a 2-process DDP step equals the 1-process step on the whole batch:
    same loss, same updated query (and key) encoder, same queue / bank."""
    torch.manual_seed(0)
    K = 16 if mechanism == "moco" else (8 if mechanism == "end_to_end" else 5)
    ref_model = REGISTRY[mechanism].from_config(W.tiny_mechanism_config(K), build_encoder(
        "resnet18", dim=8, cifar_stem=True, width=4), num_images=32, shuffle="off")
    init = {k: v.clone() for k, v in ref_model.state_dict().items()}
    batch = (torch.randn(8, 3, 8, 8), torch.randn(8, 3, 8, 8), torch.tensor([3, 9, 0, 31, 12, 5, 7, 20]))
    out = str(tmp_path / "step")
    W.launch(W.mechanism_step, 2, out, mechanism, batch, init, K)
    got = torch.load(out)
    ref = W.reference_step(mechanism, batch, init, K)
    assert torch.allclose(got["loss"], ref["loss"], atol=1e-5)
    moved = 0
    for k, v in ref["state"].items():
        if v.dtype.is_floating_point:
            assert torch.allclose(got["state"][k], v, atol=2e-5), k
            moved += int(not torch.equal(v, init[k]))
        else:
            assert torch.equal(got["state"][k], v), k
    assert moved > 10          # the step changed the model (the comparison is not vacuous)
