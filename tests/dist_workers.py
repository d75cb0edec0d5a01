"""Functions run in 2 real gloo processes by the tests (torch.multiprocessing, spawn)."""
import os
import sys
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def launch(fn, world: int, out: str, *args):
    """Run ``fn(rank, world, out, *args)`` in ``world`` gloo processes; raise if any failed."""
    import socket
    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.start_processes(_entry, args=(fn, world, port, out, args), nprocs=world, join=True, start_method="spawn")


def _entry(rank, fn, world, port, out, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        fn(rank, world, out, *args)
    except Exception:
        traceback.print_exc()
        raise
    finally:
        dist.barrier()
        dist.destroy_process_group()


def shuffle_inverse(rank, world, out):
    from pretrain.models.shuffle_bn import batch_shuffle_ddp, batch_unshuffle_ddp
    n = 8
    x = (torch.arange(n) + rank * n).float().view(n, 1)
    torch.manual_seed(123 + rank)               # different local seeds: rank 0's permutation must win
    xs, idx_unshuffle = batch_shuffle_ddp(x)
    back = batch_unshuffle_ddp(xs, idx_unshuffle)
    # which images does this rank encode for the keys (its BN batch) vs for the queries
    key_sets = [torch.empty(n) for _ in range(world)]
    dist.all_gather(key_sets, xs.view(-1).contiguous())
    if rank == 0:
        torch.save({"x": x, "back": back, "xs": xs, "key_sets": key_sets}, out)
    else:
        torch.save({"x": x, "back": back, "xs": xs}, out + ".1")


def global_bn(rank, world, out, full_x, weight, bias):
    from pretrain.models.shuffle_bn import GlobalBatchNorm
    bn = GlobalBatchNorm(full_x.shape[1])
    with torch.no_grad():
        bn.weight.copy_(weight)
        bn.bias.copy_(bias)
    n = full_x.shape[0] // world
    x = full_x[rank * n:(rank + 1) * n].clone().requires_grad_(True)
    y = bn(x)
    (y * torch.arange(y.numel()).view_as(y).float().sin()[...]).sum().backward()
    grads = {"x": x.grad, "w": bn.weight.grad.clone(), "b": bn.bias.grad.clone()}
    # parameter grads are per-rank partial sums; the total is their sum
    dist.all_reduce(grads["w"])
    dist.all_reduce(grads["b"])
    torch.save({"y": y.detach(), "grads": grads, "running_mean": bn.running_mean,
                "running_var": bn.running_var}, f"{out}.{rank}")


def tiny_mechanism_config(K: int):
    """The mechanism keys of the 2-process step tests (dim 8, K, m 0.9, tau 0.2, bank_m 0.5); each mechanism's
    ``from_config`` reads only its own (end-to-end: tau)."""
    from pretrain.config import Config
    return Config(moco_dim=8, moco_k=K, moco_m=0.9, moco_t=0.2, bank_m=0.5)


def mechanism_step(rank, world, out, mechanism, batch, init_state, K):
    """One DDP training step of ``mechanism`` with global BN on this rank's half of ``batch``."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from pretrain.models.mechanism import info_nce
    from pretrain.models.build import REGISTRY
    from pretrain.models.encoder import build_encoder
    from pretrain.models.shuffle_bn import convert_bn
    enc = build_encoder("resnet18", dim=8, cifar_stem=True, width=4)
    enc = convert_bn(enc, "sync", 1, world, torch.device("cpu"))
    model = REGISTRY[mechanism].from_config(tiny_mechanism_config(K), enc, num_images=32, shuffle="sync")
    model.load_state_dict(init_state)
    net = DDP(model, broadcast_buffers=False)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    xq, xk, idx = batch
    n = xq.shape[0] // world
    sl = slice(rank * n, (rank + 1) * n)
    torch.manual_seed(7)
    logits, labels = net(xq[sl], xk[sl], idx[sl])
    loss = info_nce(logits, labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    lv = loss.detach().clone()
    dist.all_reduce(lv)
    if rank == 0:
        torch.save({"loss": lv / world, "state": model.state_dict()}, out)


def reference_step(mechanism, batch, init_state, K):
    """The same step in one process on the whole batch with plain BN."""
    from pretrain.models.mechanism import info_nce
    from pretrain.models.build import REGISTRY
    from pretrain.models.encoder import build_encoder
    enc = build_encoder("resnet18", dim=8, cifar_stem=True, width=4)
    model = REGISTRY[mechanism].from_config(tiny_mechanism_config(K), enc, num_images=32, shuffle="off")
    model.load_state_dict(init_state)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5, momentum=0.9)
    xq, xk, idx = batch
    torch.manual_seed(7)
    logits, labels = model(xq, xk, idx)
    loss = info_nce(logits, labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"loss": loss.detach(), "state": model.state_dict()}


def knn_sharded(rank, world, out, over):
    """kNN accuracy computed by ``world`` processes together (each its shard of the bank and the test set)."""
    from pretrain.config import load_config
    from pretrain.models.encoder import encoder_for
    from pretrain.eval.knn import knn_accuracy
    cfg = load_config("tiny", over)
    torch.manual_seed(0)
    enc = encoder_for(cfg)
    acc = knn_accuracy(enc, cfg, torch.device("cpu"))
    torch.save(acc, f"{out}.{rank}")
