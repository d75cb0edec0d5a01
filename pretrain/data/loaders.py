"""The labelled sets the evaluations read: the kNN's train/test features' images (:func:`eval_loaders`) and the
ImageFolder train/val sets of the official linear protocol (:func:`imagefolder_sets`), with the DataLoader
workers each process gets (:func:`loader_workers`)."""
from __future__ import annotations

import torch
import torchvision.transforms as T

from pretrain.base.errors import UserError
from pretrain.runtime import distributed as D

from . import datasets as data


def eval_loaders(cfg, batch_size: int = 256):
    """Labelled train/test sets for evaluation: uint8 tensors, or DataLoaders for imagefolder."""
    if cfg.dataset == "imagefolder":
        tr_dir, val_dir = data.imagefolder_dirs(cfg.data)
        if not val_dir.is_dir():
            raise UserError(f"imagefolder: the kNN monitor needs {val_dir}/<class>/<image>")
        mean, std = data.stats(cfg)
        resize = int(round(cfg.image_size * 256 / 224))
        tf = T.Compose([T.Resize(resize), T.CenterCrop(cfg.image_size), T.ToTensor(), T.Normalize(mean, std)])
        workers = D.workers_per_process(cfg.workers)
        mk = lambda ds: torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers)  # noqa: E731
        tr = data.IndexedImageFolder(tr_dir, tf, with_labels=True)
        te = data.IndexedImageFolder(val_dir, tf, with_labels=True)
        labels = lambda ds: torch.tensor([y for _, y in ds.ds.samples])  # noqa: E731
        return (mk(tr), labels(tr)), (mk(te), labels(te))
    tr, te = data.eval_splits(cfg)
    return (tr.images, tr.labels), (te.images, te.labels)


def imagefolder_sets(cfg):
    """(train, val) labelled ImageFolder datasets with main_lincls.py's transforms."""
    tr_dir, val_dir = data.imagefolder_dirs(cfg.data)
    if not val_dir.is_dir():
        raise UserError(f"imagefolder: the linear protocol needs {val_dir}/<class>/<image> (ImageNet layout)")
    mean, std = data.stats(cfg)
    train_tf = T.Compose([T.RandomResizedCrop(cfg.image_size), T.RandomHorizontalFlip(), T.ToTensor(),
                          T.Normalize(mean, std)])
    val_tf = T.Compose([T.Resize(int(round(cfg.image_size * 256 / 224))), T.CenterCrop(cfg.image_size),
                        T.ToTensor(), T.Normalize(mean, std)])
    tr = data.IndexedImageFolder(tr_dir, train_tf, with_labels=True)
    va = data.IndexedImageFolder(val_dir, val_tf, with_labels=True)
    if va.ds.class_to_idx != tr.ds.class_to_idx:
        only_tr = sorted(set(tr.ds.class_to_idx) - set(va.ds.class_to_idx))
        only_va = sorted(set(va.ds.class_to_idx) - set(tr.ds.class_to_idx))
        raise UserError(f"imagefolder: {tr_dir} and {val_dir} have different classes (only in train: "
                        f"{only_tr[:3]}, only in val: {only_va[:3]})")
    return tr, va


def loader_workers(cfg) -> int:
    """DataLoader workers of this process: the node's ``cfg.workers`` shared by its processes, rounded up
    (main_lincls.py), at least 1 when cfg.workers > 0."""
    return D.workers_per_process(cfg.workers)
