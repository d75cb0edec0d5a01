"""Bad input at the pretrainer's own entry points is one ``error:`` line and exit code 2, never a traceback: a
failing write (full disk), idx files of the wrong shape or type, a decompression bomb, garbage in the launch
environment, ``pretrain.bench --steps 0``; and the one CLI guard (``pretrain.base.errors.cli``) behind them."""
from __future__ import annotations

import gzip
import os
import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from pretrain.data import datasets as data
from pretrain.base import errors
from pretrain.base import fileio
from pretrain.runtime import launchenv
from pretrain.base.errors import UserError

REPO = Path(__file__).resolve().parents[2]
SHORT = ["--preset", "tiny", "--epochs", "1", "--max-steps", "2", "--subset", "512", "--moco-k", "256",
         "--knn-subset", "256", "--threads", "1", "--no-progress"]


def _cli(argv, env=None, limit_bytes=None, timeout=300):
    def limit():                      # RLIMIT_FSIZE: a write past it fails with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
                          preexec_fn=limit if limit_bytes else None)


def _one_error_line(r) -> str:
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error: "), r.stderr[-2000:]
    return lines[-1]


# -- a failing write ------------------------------------------------------------------------------------------

def test_a_failed_checkpoint_write_names_the_file_and_keeps_the_old_one(tmp_path):
    """torch.save's zip writer turns ENOSPC into a RuntimeError; atomic_save serialises in memory first, so a
    full disk (here: a file-size limit, EFBIG) is an OSError naming the checkpoint, and the old file stays."""
    ck = tmp_path / "checkpoint.pth"
    ck.write_bytes(b"old checkpoint")
    code = ("import sys, torch; from pretrain.base.fileio import atomic_save\n"
            "try:\n    atomic_save({'w': torch.zeros(1_000_000)}, sys.argv[1])\n"
            "except OSError as e:\n    print(e.errno, e.filename)\n")
    r = _cli(["-c", code, str(ck)], limit_bytes=1_000_000)
    errno_, name = r.stdout.split()
    assert int(errno_) == 27 and name == str(ck), r.stdout + r.stderr
    assert ck.read_bytes() == b"old checkpoint"
    assert fileio.stale_temps(tmp_path) == []


def test_pretrain_on_a_full_disk_is_one_line_and_records_nothing(tmp_path):
    out = tmp_path / "run"
    r = _cli(["-m", "pretrain", *SHORT, "--output", str(out)], limit_bytes=2_000_000)
    line = _one_error_line(r)
    assert str(out / "checkpoint.pth") in line and "too large" in line.lower(), line
    assert not (out / "summary.json").exists()                  # a crash is never recorded as a result
    assert fileio.stale_temps(out) == []


# -- idx files ------------------------------------------------------------------------------------------------

def _idx(dims, code=0x08) -> bytes:
    n = 1
    for d in dims:
        n *= d
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + bytes(n)


@pytest.mark.parametrize("content, expected, message", [
    (_idx([60, 784]), 3, "2 dimension(s), expected 3"),
    (_idx([60, 28, 28], 0x0C), 3, "type 0x0c"),
    (_idx([60, 28, 28]), 1, "3 dimension(s), expected 1"),
    (bytes([0, 0, 8, 3, 0, 0]), 3, "truncated idx header"),
    (_idx([60, 28, 28])[:-5], 3, "truncated idx file"),
])
def test_idx_files_of_another_shape_or_type_are_refused(tmp_path, content, expected, message):
    p = tmp_path / "x-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(content))
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data._read_idx(p, expected)


def test_a_good_idx_file_reads(tmp_path):
    p = tmp_path / "x-idx3-ubyte"
    p.write_bytes(_idx([5, 28, 28]))
    assert data._read_idx(p, 3).shape == (5, 28, 28)


def test_pretrain_on_a_2d_idx_file_is_one_line(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx([600, 784])))
        (raw / f"{split}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx([600])))
    r = _cli(["-m", "pretrain", *SHORT, "--subset", "0", "--data", str(tmp_path), "--output", str(tmp_path / "r")])
    assert "2 dimension(s), expected 3" in _one_error_line(r)


# -- images ---------------------------------------------------------------------------------------------------

def _png(w: int, h: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    raw = b"\0" * ((1 + w) * h if w * h <= 4096 else 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_a_user_error(tmp_path):
    bomb, fine = tmp_path / "bomb.png", tmp_path / "fine.png"
    bomb.write_bytes(_png(30000, 30000))           # 9e8 pixels in a few bytes: past 2 x PIL's MAX_IMAGE_PIXELS
    fine.write_bytes(_png(8, 8))
    with pytest.raises(UserError, match=r"cannot read image .*bomb\.png: Image size \(900000000 pixels\)"):
        data.pil_loader(str(bomb))
    assert data.pil_loader(str(fine)).size == (8, 8)


# -- the launch environment -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value, default, minimum, expected", [
    (None, 1, 1, 1), ("", 1, 1, 1), (" 4 ", 1, 1, 4), ("0", 0, 0, 0)])
def test_env_int_reads_integers(monkeypatch, value, default, minimum, expected):
    if value is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", value)
    assert launchenv.env_int("WORLD_SIZE", default, minimum) == expected


@pytest.mark.parametrize("value, message", [("two", "is not an integer"), ("1.5", "is not an integer"),
                                            ("0", "must be >= 1"), ("-3", "must be >= 1")])
def test_env_int_refuses_garbage_naming_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("WORLD_SIZE", value)
    with pytest.raises(UserError, match=r"\$WORLD_SIZE=.*" + message):
        launchenv.env_int("WORLD_SIZE", 1, minimum=1)


@pytest.mark.parametrize("env, message", [
    ({"WORLD_SIZE": "two"}, "$WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "x1"}, "$RANK='x1' is not an integer"),
    ({"WORLD_SIZE": "2", "RANK": "5"}, "$RANK=5 is not below $WORLD_SIZE=2"),   # before: waited for peers
])
def test_pretrain_with_a_garbage_launch_environment_is_one_line(tmp_path, env, message):
    r = _cli(["-m", "pretrain", *SHORT, "--output", str(tmp_path / "r")],
             env={"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29583", **env}, timeout=120)
    assert message in _one_error_line(r)


# -- the CLI guard --------------------------------------------------------------------------------------------

def test_bench_steps_zero_is_refused_by_argparse():
    r = _cli(["-m", "pretrain.bench", "--preset", "tiny", "--steps", "0"])
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "argument --steps: must be >= 1, got 0" in r.stderr


def test_cli_guard(capsys):
    def raises(exc):
        @errors.cli
        def main(argv=None) -> int:
            raise exc
        return main()

    assert raises(UserError("bad key")) == 2
    assert capsys.readouterr().err == "error: bad key\n"
    assert raises(OSError(28, "No space left on device", "/x/checkpoint.pth")) == 2
    assert capsys.readouterr().err == "error: No space left on device: /x/checkpoint.pth\n"
    assert raises(KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == "interrupted\n"
    with pytest.raises(ZeroDivisionError):           # a bug keeps its traceback
        raises(ZeroDivisionError("a bug"))
