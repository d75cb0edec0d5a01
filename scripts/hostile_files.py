"""Hostile files (merged into ``scripts/hostile_inputs.py``): checkpoints that run code when unpickled, outputs
that would replace an input or a user's own file, and result files that are not what they say."""
from __future__ import annotations

import json
import re
import subprocess

from hostile_common import PY, SHORT, Ctx, _res, _short_run, refused

# a pickle whose loading touches the marker file (harmless stand-in for any command); the checkpoint around it
# is a real, loadable run checkpoint, so only the payload decides whether a reader refuses it
_EVIL = ("import pathlib, sys, torch\n"
         "from pretrain.runtime.checkpoint import load\n"
         "class Payload:\n"
         "    def __reduce__(self):\n"
         "        return (pathlib.Path.touch, (sys.argv[3],))\n"
         "ck = load(sys.argv[1])\n"
         "ck['note'] = Payload()\n"
         "torch.save(ck, sys.argv[2])\n")


def _evil(c: Ctx):
    """(run dir, malicious checkpoint, marker): a short run, and a copy of its checkpoint with the payload."""
    out = c.tmp / "run"
    _short_run(c, out)
    evil, marker = c.tmp / "evil.pth", c.tmp / "PAYLOAD_RAN"
    subprocess.run([PY, "-c", _EVIL, str(out / "checkpoint.pth"), str(evil), str(marker)], check=True,
                   capture_output=True, cwd=c.repo, env=c.env)
    return out, evil, marker


def _ran(marker) -> str:
    return "payload RAN" if marker.exists() else "payload did not run"


def evil_resume(c: Ctx):
    out, evil, marker = _evil(c)
    (out / "summary.json").unlink()
    evil.replace(out / "checkpoint.pth")
    r = c.run(["-m", "pretrain", *SHORT, "--epochs", "2", "--output", str(out), "--resume"])
    return refused(r, _ran(marker))


def evil_lincls(c: Ctx):
    _, evil, marker = _evil(c)
    r = c.run(["-m", "pretrain.lincls", str(evil), "--epochs", "1", "--output", str(c.tmp / "l.json")])
    return refused(r, _ran(marker))


def evil_knn(c: Ctx):
    _, evil, marker = _evil(c)
    r = c.run(["-m", "pretrain.knn", "--checkpoint", str(evil), "--knn-subset", "256", "--threads", "1"])
    return refused(r, _ran(marker))


def evil_export(c: Ctx):
    _, evil, marker = _evil(c)
    r = c.run(["-m", "pretrain.export", str(evil), str(c.tmp / "o.pth.tar")])
    return refused(r, _ran(marker))


def evil_convert(c: Ctx):
    _, evil, marker = _evil(c)
    r = c.run(["-m", "transfer.convert", str(evil), str(c.tmp / "o.pkl"), "--no-verify"])
    return refused(r, _ran(marker))


def module_state_dict(c: Ctx):
    """A checkpoint whose 'state_dict' is a module (torch.save of the model instead of its state_dict())."""
    p = c.tmp / "module.pth"
    subprocess.run([PY, "-c", "import sys, torch, torchvision; torch.save({'state_dict': "
                    "torchvision.models.resnet18(), 'arch': 'resnet18'}, sys.argv[1])", str(p)], check=True)
    r = c.run(["-m", "pretrain.lincls", str(p), "--preset", "tiny", "--epochs", "1",
               "--output", str(c.tmp / "l.json")])
    return refused(r, "no result" if not (c.tmp / "l.json").exists() else "result WRITTEN")


def lincls_output_is_input(c: Ctx):
    out = c.tmp / "run"
    _short_run(c, out)
    ck = out / "checkpoint.pth"
    before = ck.read_bytes()
    r = c.run(["-m", "pretrain.lincls", str(ck), "--epochs", "1", "--output", str(ck)])
    return refused(r, "checkpoint unchanged" if ck.read_bytes() == before else "checkpoint REPLACED")


def convert_output_is_input(c: Ctx):
    """An official-layout ResNet-50 MoCo checkpoint converted onto itself (``transfer.convert X X``)."""
    ck = c.tmp / "moco_r50.pth"
    subprocess.run([PY, "-c", "import sys, torch, torchvision; m = torchvision.models.resnet50(num_classes=128); "
                    "torch.save({'epoch': 200, 'arch': 'resnet50', 'state_dict': {'module.encoder_q.' + k: v "
                    "for k, v in m.state_dict().items()}}, sys.argv[1])", str(ck)], check=True)
    before = ck.read_bytes()
    r = c.run(["-m", "transfer.convert", str(ck), str(ck), "--no-verify"])
    return refused(r, "checkpoint unchanged" if ck.read_bytes() == before else "checkpoint REPLACED")


def output_user_folder(c: Ctx):
    d = c.tmp / "mine"
    d.mkdir()
    (d / "config.yaml").write_text("# my own notes\nlr: 42\n")
    r = c.run(["-m", "pretrain", *SHORT, "--output", str(d)])
    same = (d / "config.yaml").read_text() == "# my own notes\nlr: 42\n"
    return refused(r, "config.yaml unchanged" if same else "config.yaml OVERWRITTEN")


def _one_lincls_grid(c: Ctx):
    p = c.tmp / "gl.yaml"
    p.write_text("name: gl\nsweep:\n  - moco_m: [0.99]\nfixed: {epochs: 1, max_steps: 2, subset: 512, moco_k: 256, "
                 "knn_subset: 256, threads: 1}\nseeds: 1\neval: [knn, lincls]\npresets:\n  tiny: {}\n")
    return p


def handwritten_lincls(c: Ctx):
    """A lincls.json written by hand (1 epoch, another lr, a made-up number) in a pretrained grid run."""
    g = _one_lincls_grid(c)
    base = ["-m", "ablations", "run", str(g), "--preset", "tiny", "--executor", "debug"]
    # pretrain only (the same grid without its linear protocol: the same run directory), then the hand-written file
    p = c.tmp / "gk.yaml"
    p.write_text(g.read_text().replace("eval: [knn, lincls]", "eval: [knn]"))
    r0 = c.run(["-m", "ablations", "run", str(p), "--preset", "tiny", "--executor", "debug"])
    run_dir = next((c.tmp / "runs").glob("gl/tiny/*"), None)
    if run_dir is None:
        return _res(r0, "no run")
    (run_dir / "lincls.json").write_text(json.dumps({"lincls_acc1": 99.9, "lincls_acc5": 100.0, "epochs": 1,
                                                     "lr": 0.1, "cache_features": True}))
    r = c.run(base)
    lin = json.loads((run_dir / "lincls.json").read_text())
    res = c.tmp / "results.csv"
    taken = res.exists() and "99.9" in res.read_text()
    rerun = lin.get("epochs") != 1
    return _res(r, ("hand-written 99.9 TAKEN; " if taken else "") + ("protocol re-run" if rerun else
                                                                    "protocol NOT re-run")
                + f", lincls.json epochs {lin.get('epochs')}")


def knn_checkpoint_config(c: Ctx):
    """``pretrain.knn --checkpoint`` of a run whose kNN protocol (``--knn-subset 256``) is not the preset's."""
    out = c.tmp / "run"
    _short_run(c, out)
    own = json.loads((out / "summary.json").read_text())["knn_acc"]
    r = c.run(["-m", "pretrain.knn", "--checkpoint", str(out / "checkpoint.pth"), "--threads", "1"])
    m = re.search(r"checkpoint\.pth.*?: ([0-9.]+)%", r.stdout)
    got = float(m.group(1)) if m else None
    what = "no number" if got is None else ("same as the run's" if abs(got - round(own, 2)) < 1e-6 else "DIFFERS")
    return _res(r, f"run {own:.2f}%, knn {got if got is None else f'{got:.2f}'}%: {what}")


CASES = {f.__name__: f for f in (evil_resume, evil_lincls, evil_knn, evil_export, evil_convert, module_state_dict,
                                 lincls_output_is_input, convert_output_is_input, output_user_folder,
                                 handwritten_lincls, knn_checkpoint_config)}
