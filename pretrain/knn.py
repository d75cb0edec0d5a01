"""kNN monitor: weighted kNN on L2-normalised features (k = 200, t = 0.1), as the official MoCo CIFAR-10 demo
(after Wu et al. 2018). ``python -m pretrain.knn --preset P [--checkpoint CKPT]`` evaluates a checkpoint, or
the same network at random initialisation (the baseline the trained features must beat)."""
from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from . import data
from .augment import normalize_batch
from .encoder import backbone_forward


@torch.no_grad()
def knn_predict(feature, feature_bank, feature_labels, classes: int, knn_k: int, knn_t: float):
    """feature: N x D, feature_bank: D x M (normalised), feature_labels: M. Returns N x classes ranked labels."""
    sim_matrix = torch.mm(feature, feature_bank)
    knn_k = min(knn_k, feature_bank.shape[1])
    sim_weight, sim_indices = sim_matrix.topk(k=knn_k, dim=-1)
    sim_labels = torch.gather(feature_labels.expand(feature.size(0), -1), dim=-1, index=sim_indices)
    sim_weight = (sim_weight / knn_t).exp()
    one_hot = torch.zeros(feature.size(0) * knn_k, classes, device=sim_labels.device)
    one_hot = one_hot.scatter(dim=-1, index=sim_labels.reshape(-1, 1), value=1.0)
    pred_scores = torch.sum(one_hot.view(feature.size(0), -1, classes) * sim_weight.unsqueeze(dim=-1), dim=1)
    return pred_scores.argsort(dim=-1, descending=True)


@torch.no_grad()
def extract(encoder, images, cfg, device, feature: str = "backbone", batch_size: int = 512) -> torch.Tensor:
    """Normalised features of every image: a uint8 tensor (N, C, H, W) or a DataLoader of (image, label)."""
    was_training = encoder.training
    encoder.eval()
    mean, std = data.stats(cfg)
    feats = []
    batches = (images.split(batch_size) if isinstance(images, torch.Tensor) else (x for x, _ in images))
    for x in batches:
        if isinstance(images, torch.Tensor):
            x = normalize_batch(x.to(device), mean, std, cfg.image_size)
        else:
            x = x.to(device)
        f = backbone_forward(encoder, x) if feature == "backbone" else encoder(x)
        feats.append(F.normalize(f.float(), dim=1))
    encoder.train(was_training)
    return torch.cat(feats)


def eval_loaders(cfg, batch_size: int = 256):
    """Labelled train/test sets for evaluation: uint8 tensors, or DataLoaders for imagefolder."""
    if cfg.dataset == "imagefolder":
        import torchvision.transforms as T
        tr_dir, val_dir = data.imagefolder_dirs(cfg.data)
        mean, std = data.stats(cfg)
        resize = int(round(cfg.image_size * 256 / 224))
        tf = T.Compose([T.Resize(resize), T.CenterCrop(cfg.image_size), T.ToTensor(), T.Normalize(mean, std)])
        mk = lambda d: torch.utils.data.DataLoader(data.IndexedImageFolder(d, tf, with_labels=True),  # noqa: E731
                                                   batch_size=batch_size, num_workers=min(cfg.workers, 8))
        tr = data.IndexedImageFolder(tr_dir, tf, with_labels=True)
        labels = lambda ds: torch.tensor([y for _, y in ds.ds.samples])  # noqa: E731
        te = data.IndexedImageFolder(val_dir, tf, with_labels=True)
        return (mk(tr_dir), labels(tr)), (mk(val_dir), labels(te))
    tr, te = data.eval_splits(cfg)
    return (tr.images, tr.labels), (te.images, te.labels)


@torch.no_grad()
def knn_accuracy(encoder, cfg, device, sets=None) -> float:
    """Top-1 weighted-kNN accuracy (%) of the test set against the training set's features."""
    (tr_x, tr_y), (te_x, te_y) = sets if sets is not None else eval_loaders(cfg)
    bank = extract(encoder, tr_x, cfg, device, cfg.knn_feature).t().contiguous()
    labels = tr_y.to(device)
    classes = int(max(int(tr_y.max()), int(te_y.max())) + 1)
    correct = 0
    feats = extract(encoder, te_x, cfg, device, cfg.knn_feature)
    for f, y in zip(feats.split(1024), te_y.to(device).split(1024)):
        pred = knn_predict(f, bank, labels, classes, cfg.knn_k, cfg.knn_t)
        correct += (pred[:, 0] == y).sum().item()
    return 100.0 * correct / len(te_y)


def main(argv=None) -> int:
    from .checkpoint import load, query_encoder_state
    from .config import add_config_args, load_config, overrides_from_args
    from .encoder import build_encoder
    from .errors import UserError, die

    p = argparse.ArgumentParser(prog="python -m pretrain.knn", description=__doc__)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--checkpoint", default="", help="a pretrainer checkpoint (default: random initialisation)")
    add_config_args(p)
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.preset, overrides_from_args(args))
        torch.manual_seed(cfg.seed)
        enc = build_encoder(cfg.arch, cfg.moco_dim, cfg.mlp, cfg.cifar_stem, cfg.in_chans, cfg.width)
        what = "random init"
        if args.checkpoint:
            ck = load(args.checkpoint)
            try:
                enc.load_state_dict(query_encoder_state(ck, args.checkpoint))
            except RuntimeError as e:
                raise UserError(f"{args.checkpoint}: does not fit {cfg.arch} with this preset "
                                f"({str(e).splitlines()[0]})") from None
            what = args.checkpoint
        acc = knn_accuracy(enc, cfg, torch.device("cpu"))
    except UserError as e:
        die(e)
    print(f"kNN top-1 ({what}, k={cfg.knn_k}, t={cfg.knn_t}, {cfg.knn_feature} features): {acc:.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
