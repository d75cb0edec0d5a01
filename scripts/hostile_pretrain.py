"""Hostile-input cases of the pretrainer's own entry points (``python -m pretrain``, ``pretrain.bench``): a
full disk during a checkpoint write, idx files of the wrong shape, a decompression bomb in an ImageFolder,
garbage in the launch environment (WORLD_SIZE, RANK), ``--steps 0``. Each case runs the real command."""
from __future__ import annotations

import gzip
import struct
import subprocess
import zlib
from pathlib import Path

from hostile_common import SHORT, Ctx, refused


def full_disk(c: Ctx):
    """A 3 MB file system: the first checkpoint write fails with ENOSPC."""
    mnt = c.tmp / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        return {"exit": "n/a", "stderr": "cannot mount a small tmpfs here (not root?)", "traceback": False,
                "check": ""}
    try:
        r = c.run(["-m", "pretrain", *SHORT, "--output", str(mnt / "run")])
        left = sorted(p.name for p in (mnt / "run").iterdir()) if (mnt / "run").is_dir() else []
        temps = [n for n in left if n.endswith(".tmp") or ".tmp." in n]
        summary = "summary.json" in left
        return refused(r, ("temp LEFT " if temps else "no temp left ") + ("summary WRITTEN" if summary else
                                                                        "no summary"))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _idx(dims, dtype_code=0x08) -> bytes:
    n = 1
    for d in dims:
        n *= d
    return bytes([0, 0, dtype_code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(n)


def _fmnist(c: Ctx, images: bytes, labels: bytes) -> Path:
    d = c.tmp / "fm" / "FashionMNIST" / "raw"
    d.mkdir(parents=True)
    for split in ("train", "t10k"):
        (d / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
        (d / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels))
    return c.tmp / "fm"


def idx_2d(c: Ctx):
    """Images as a 2-D idx file (600 x 784 instead of 600 x 28 x 28)."""
    root = _fmnist(c, _idx([600, 784]), _idx([600]))
    return refused(c.run(["-m", "pretrain", *SHORT, "--subset", "0", "--data", str(root),
                       "--output", str(c.tmp / "r")]))


def idx_int32(c: Ctx):
    """Images stored as int32 (idx type 0x0c) instead of unsigned bytes."""
    root = _fmnist(c, _idx([600, 28, 28], 0x0C), _idx([600]))
    return refused(c.run(["-m", "pretrain", *SHORT, "--subset", "0", "--data", str(root),
                       "--output", str(c.tmp / "r")]))


def _png(w: int, h: int) -> bytes:
    """A valid PNG header declaring w x h pixels (PIL refuses it at open, before decoding)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    raw = b"\0" * ((1 + w) * h if w * h <= 4096 else 64)      # the bomb's pixels are never decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def image_bomb(c: Ctx):
    """An ImageFolder holding a 30000 x 30000 PNG of a few bytes (PIL's decompression-bomb error)."""
    root = c.tmp / "if"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(12):
                (d / f"{i}.png").write_bytes(_png(30000, 30000) if (split, cls) == ("train", "a")
                                             else _png(8, 8))
    return refused(c.run(["-m", "pretrain", "--preset", "tiny", "--dataset", "imagefolder", "--data", str(root),
                       "--augment-on", "workers", "--batch-size", "16", "--moco-k", "16", "--shuffle-bn", "off", "--subset", "0",
                       "--epochs", "1", "--max-steps", "2", "--no-knn-monitor", "--in-chans", "3",
                       "--threads", "1", "--no-progress", "--output", str(c.tmp / "r")]))


def world_size_garbage(c: Ctx):
    return refused(c.run(["-m", "pretrain", *SHORT, "--output", str(c.tmp / "r")], env={"WORLD_SIZE": "two"}))


def rank_garbage(c: Ctx):
    return refused(c.run(["-m", "pretrain", *SHORT, "--output", str(c.tmp / "r")],
                      env={"WORLD_SIZE": "2", "RANK": "x1"}))


def rank_above_world(c: Ctx):
    """RANK 5 of WORLD_SIZE 2: no peer will ever come."""
    try:
        return refused(c.run(["-m", "pretrain", *SHORT, "--output", str(c.tmp / "r")],
                             env={"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "127.0.0.1",
                                  "MASTER_PORT": "29581"}, timeout=60))
    except subprocess.TimeoutExpired:
        return {"exit": "timeout", "stderr": "", "traceback": False, "check": "HANGS (killed after 60 s)"}


def bench_steps_zero(c: Ctx):
    return refused(c.run(["-m", "pretrain.bench", "--preset", "tiny", "--steps", "0", "--threads", "1"]))


CASES = {f.__name__: f for f in (full_disk, idx_2d, idx_int32, image_bomb, world_size_garbage, rank_garbage,
                                 rank_above_world, bench_steps_zero)}
