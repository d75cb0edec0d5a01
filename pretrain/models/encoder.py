"""Encoders: torchvision ResNets (parameter names unchanged, so the official MoCo tools and the detectron2
converter read our checkpoints), with the options needed at small scale, and the v1 / v2 heads; the encoder a
checkpoint describes (:func:`load_backbone`)."""
from __future__ import annotations

import torch.nn as nn
import torchvision.models.resnet as tv_resnet

from pretrain.base.errors import UserError
from pretrain.runtime.checkpoint import checkpoint_config, load, query_encoder_state

RESNETS = sorted(n for n in tv_resnet.__all__ if n[0].islower() and n not in ("resnet",)
                 and callable(getattr(tv_resnet, n)) and not n.startswith("get"))


def _rebuild_width(model: tv_resnet.ResNet, width: int, in_chans: int, cifar_stem: bool, stem_stride: int = 1) -> None:
    """Rebuild stem and stages with ``width`` first-stage channels via torchvision's own ``_make_layer``."""
    block = type(model.layer1[0])
    layers = [len(model.layer1), len(model.layer2), len(model.layer3), len(model.layer4)]
    num_classes = model.fc.out_features
    model.inplanes = width
    model.dilation = 1
    if cifar_stem:
        model.conv1 = nn.Conv2d(in_chans, width, kernel_size=3, stride=stem_stride, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:
        model.conv1 = nn.Conv2d(in_chans, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = nn.BatchNorm2d(width)
    model.layer1 = model._make_layer(block, width, layers[0])
    model.layer2 = model._make_layer(block, width * 2, layers[1], stride=2)
    model.layer3 = model._make_layer(block, width * 4, layers[2], stride=2)
    model.layer4 = model._make_layer(block, width * 8, layers[3], stride=2)
    model.fc = nn.Linear(width * 8 * block.expansion, num_classes)
    # torchvision's initialisation (ResNet.__init__)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def build_encoder(arch: str = "resnet50", dim: int = 128, mlp: bool = False, cifar_stem: bool = False,
                  in_chans: int = 3, width: int = 64, stem_stride: int = 1) -> tv_resnet.ResNet:
    """A torchvision ResNet whose ``fc`` maps to the ``dim``-d feature.

    ``cifar_stem``: a 3x3 first conv of stride ``stem_stride`` and no max-pool (stride 1 = the CIFAR demo's
    stem; stride 2 halves the first-stage map, e.g. 28x28 -> 14x14, about 4x fewer FLOPs).

    v1 head: ``fc = Linear(feat, dim)``; v2 head (``mlp``): ``fc = Sequential(Linear(feat, feat), ReLU,
    Linear(feat, dim))`` exactly as the official code (so the keys are ``fc.0.*`` and ``fc.2.*``).
    """
    if arch not in RESNETS:
        raise UserError(f"unknown arch '{arch}' (torchvision ResNets: {', '.join(RESNETS)})")
    model = getattr(tv_resnet, arch)(num_classes=dim)
    if stem_stride != 1 and not cifar_stem:
        raise UserError(f"stem_stride {stem_stride} needs cifar_stem (the torchvision stem has its own strides)")
    if cifar_stem or in_chans != 3 or width != 64:
        _rebuild_width(model, width, in_chans, cifar_stem, stem_stride)
    if mlp:
        feat = model.fc.weight.shape[1]
        model.fc = nn.Sequential(nn.Linear(feat, feat), nn.ReLU(), model.fc)
    return model


def encoder_for(cfg, mlp: bool | None = None) -> tv_resnet.ResNet:
    """The encoder a run's config describes (``mlp`` overrides the config's head, e.g. for a backbone)."""
    return build_encoder(cfg.arch, cfg.moco_dim, cfg.mlp if mlp is None else mlp, cfg.cifar_stem, cfg.in_chans,
                         cfg.width, cfg.stem_stride)


def feature_dim(encoder: tv_resnet.ResNet) -> int:
    fc = encoder.fc
    first = fc[0] if isinstance(fc, nn.Sequential) else fc
    return first.in_features


def backbone_forward(encoder: tv_resnet.ResNet, x):
    """Pooled features before ``fc`` (what kNN and the linear protocol use)."""
    e = encoder
    x = e.maxpool(e.relu(e.bn1(e.conv1(x))))
    x = e.layer4(e.layer3(e.layer2(e.layer1(x))))
    return e.avgpool(x).flatten(1)


def load_backbone(ckpt_path, preset: str | None = None, data_dir: str | None = None,
                  overrides: dict | None = None):
    """(config, encoder with the checkpoint's query-encoder weights, those weights): the network the checkpoint
    was trained as, built from the checkpoint's own config (:func:`checkpoint_config`; ``preset`` only for a
    checkpoint without one), so every tool evaluates the architecture that was trained. ``data_dir`` replaces
    the config's data path (the dataset may have moved since pretraining)."""
    ck = load(ckpt_path)
    over = dict(overrides or {})
    if data_dir:
        over["data"] = str(data_dir)
    cfg = checkpoint_config(ck, ckpt_path, preset, over)
    state = query_encoder_state(ck, ckpt_path)
    enc = encoder_for(cfg)
    try:
        enc.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{ckpt_path}: weights do not fit {cfg.arch} (width {cfg.width}, in_chans "
                        f"{cfg.in_chans}): {str(e).splitlines()[0]}") from None
    return cfg, enc, state
