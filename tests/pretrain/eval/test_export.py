"""python -m pretrain.export: our checkpoint in the official MoCo layout, read as the official tools read it."""

import pytest
import torch
import torch.nn as nn
import torchvision

from pretrain.models.build import build_pretrainer
from pretrain.runtime.checkpoint import FORMAT, load, query_encoder_state, rng_state
from pretrain.config import load_config
from pretrain.export import main as export_cli
from pretrain.models.encoder import load_backbone


def save_ours(path, overrides, preset="imagenet", num_images=64):
    """A checkpoint as Trainer.save writes it."""
    cfg = load_config(preset, overrides)
    torch.manual_seed(0)
    model = build_pretrainer(cfg, num_images)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=cfg.lr, momentum=0.9)
    torch.save({"format": FORMAT, "arch": cfg.arch, "config": cfg.to_dict(), "epoch": 7,
                "state_dict": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                "history": []}, path)
    return model


class OfficialMoCo(nn.Module):
    """The parameters and buffers of facebookresearch/moco's moco/builder.py MoCo.__init__."""

    def __init__(self, base_encoder, dim=128, K=65536, mlp=False):
        super().__init__()
        self.encoder_q = base_encoder(num_classes=dim)
        self.encoder_k = base_encoder(num_classes=dim)
        if mlp:  # hack: brute-force replacement
            dim_mlp = self.encoder_q.fc.weight.shape[1]
            self.encoder_q.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), self.encoder_q.fc)
            self.encoder_k.fc = nn.Sequential(nn.Linear(dim_mlp, dim_mlp), nn.ReLU(), self.encoder_k.fc)
        self.register_buffer("queue", torch.randn(dim, K))
        self.queue = nn.functional.normalize(self.queue, dim=0)
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))


def main_lincls_load(path):
    """main_lincls.py --pretrained, verbatim but for the print."""
    model = torchvision.models.__dict__["resnet50"]()
    checkpoint = torch.load(path, map_location="cpu")          # torch's default: weights_only=True
    state_dict = checkpoint["state_dict"]
    for k in list(state_dict.keys()):
        # retain only encoder_q up to before the embedding layer
        if k.startswith("module.encoder_q") and not k.startswith("module.encoder_q.fc"):
            # remove prefix
            state_dict[k[len("module.encoder_q."):]] = state_dict[k]
        # delete renamed or unused k
        del state_dict[k]
    msg = model.load_state_dict(state_dict, strict=False)
    assert set(msg.missing_keys) == {"fc.weight", "fc.bias"}
    return model


def detectron2_convert(path):
    """detection/convert-pretrain-to-detectron2.py's renaming (the pretraining fc skipped)."""
    obj = torch.load(path, map_location="cpu")["state_dict"]
    newmodel = {}
    for k, v in obj.items():
        if not k.startswith("module.encoder_q."):
            continue
        k = k.replace("module.encoder_q.", "")
        if k.startswith("fc."):
            continue
        if "layer" not in k:
            k = "stem." + k
        for t in [1, 2, 3, 4]:
            k = k.replace("layer{}".format(t), "res{}".format(t + 1))
        for t in [1, 2, 3]:
            k = k.replace("bn{}".format(t), "conv{}.norm".format(t))
        k = k.replace("downsample.0", "shortcut")
        k = k.replace("downsample.1", "shortcut.norm")
        newmodel[k] = v.numpy()
    return newmodel


@pytest.fixture(scope="module", params=[False, True], ids=["v1_fc", "v2_mlp"])
def exported(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    model = save_ours(d / "checkpoint.pth", {"mlp": request.param})          # K 65536 as the paper
    assert export_cli([str(d / "checkpoint.pth"), str(d / "moco.pth.tar")]) == 0
    return request.param, model, d / "moco.pth.tar"


def test_exported_keys_are_the_official_builders(exported, capsys):
    mlp, _, path = exported
    off = torch.load(path, map_location="cpu", weights_only=True)
    official = OfficialMoCo(torchvision.models.resnet50, mlp=mlp)
    want = {"module." + k: v for k, v in official.state_dict().items()}
    assert set(off["state_dict"]) == set(want)
    assert all(off["state_dict"][k].shape == v.shape and off["state_dict"][k].dtype == v.dtype
               for k, v in want.items())
    assert off["state_dict"]["module.queue"].shape == (128, 65536)
    assert (off["arch"], off["epoch"]) == ("resnet50", 7) and "optimizer" not in off
    assert all(v.device.type == "cpu" for v in off["state_dict"].values())


def test_main_lincls_loads_the_query_encoder(exported):
    _, ours, path = exported
    model = main_lincls_load(path)
    mine = ours.encoder_q.state_dict()
    got = model.state_dict()
    assert all(torch.equal(got[k], mine[k]) for k in got if not k.startswith("fc."))


def test_detectron2_converter_maps_every_backbone_tensor(exported):
    from transfer.convert import convert, load_checkpoint
    _, _, path = exported
    new = detectron2_convert(path)
    backbone = [k for k in torchvision.models.resnet50().state_dict() if not k.startswith("fc.")]
    assert len(new) == len(backbone) == 318           # every conv/bn tensor of ResNet-50 (incl. BN counters)
    assert {"stem.conv1.weight", "stem.conv1.norm.running_var", "res2.0.shortcut.weight",
            "res2.0.shortcut.norm.bias", "res5.2.conv3.norm.weight"} <= set(new)
    assert set(convert(load_checkpoint(path))["model"]) == set(new)   # our transfer.convert agrees


def test_round_trip_through_our_readers(exported):
    mlp, ours, path = exported
    mine = ours.encoder_q.state_dict()
    q = query_encoder_state(load(path))
    assert set(q) == set(mine) and all(torch.equal(q[k], mine[k]) for k in mine)
    cfg, enc, _ = load_backbone(str(path))                  # the exported config: no --preset needed
    assert cfg.mlp == mlp and all(torch.equal(v, mine[k]) for k, v in enc.state_dict().items())


@pytest.mark.parametrize("mechanism,extra", [("end_to_end", set()), ("memory_bank", {"module.bank"})])
def test_other_mechanisms_and_non_standard_resnets(mechanism, extra, tmp_path, capsys):
    over = {"mechanism": mechanism, "moco_k": 32, "batch_size": 32, "bank_init": "random"}
    model = save_ours(tmp_path / "c.pth", over, preset="tiny")             # width 8, CIFAR stem, 1 channel
    assert export_cli([str(tmp_path / "c.pth"), str(tmp_path / "o.pth")]) == 0
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    width = load_config("tiny").width
    assert len(err) == 1 and err[0].startswith("warning:") and f"width {width}, cifar_stem, in_chans 1" in err[0]
    assert cap.out.startswith(f"wrote {tmp_path / 'o.pth'}") and "main_lincls.py" in cap.out
    sd = torch.load(tmp_path / "o.pth", weights_only=True)["state_dict"]
    assert set(sd) == {"module." + k for k in model.state_dict()}
    assert {k for k in sd if not k.startswith("module.encoder_q.")} == extra


def test_bad_inputs_are_one_line_errors(exported, tmp_path, capsys):
    _, _, path = exported
    cases = [(tmp_path / "missing.pth", "checkpoint not found"),
             (path, "already in the official layout")]
    torch.save({"state_dict": {"encoder_q.conv1.weight": torch.zeros(1)}}, tmp_path / "foreign.pth")
    cases.append((tmp_path / "foreign.pth", "not a mocobench pretrainer checkpoint"))
    (tmp_path / "corrupt.pth").write_bytes(b"not a torch file")
    cases.append((tmp_path / "corrupt.pth", "cannot read checkpoint"))
    for src, msg in cases:
        with pytest.raises(SystemExit) as e:
            export_cli([str(src), str(tmp_path / "out.pth")])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error:") and msg in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out.pth").exists()
