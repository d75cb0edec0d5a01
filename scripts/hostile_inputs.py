"""Bad inputs and faults against the CLIs, as a hostile new user would try them.

    python scripts/hostile_inputs.py [--repo DIR] [--only ID ...] [--json FILE] [--before BEFORE.json --markdown FILE]

Each case runs the real command (``python -m pretrain``, ``python -m ablations``, ``python -m reports``) in a
scratch directory with ``DIR`` (default: this checkout) as the working directory, so the same script measures
an older checkout (``git worktree add /tmp/before <commit>``) and this one. It prints, per case, the exit
codes, the last stderr line, whether a Python traceback reached the user, and what a check of the files found
(e.g. "config.yaml unchanged"), and whether the row keeps the README's contract (``hostile_common.holds``).
Training cases use a few steps of the tiny preset (seconds each). ``--before`` (the ``--json`` of a run against
an older checkout) prints the before/after table in Markdown and the counts.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile_common import LONG, PY, SHORT, Ctx, _popen_res, _res, _short_run, holds  # noqa: E402


# --- cases ---------------------------------------------------------------------------------------------------
def two_owners(c: Ctx):
    out = c.tmp / "shared"
    a = c.start(["-m", "pretrain", *LONG, "--output", str(out)])
    time.sleep(1.0)
    b = c.start(["-m", "pretrain", *LONG, "--output", str(out)])
    r = _popen_res([a, b])
    r["check"] = "BOTH trained, both 'done'" if r["exit"] == "0,0" else "one owner"
    return r


def refused_resume(c: Ctx):
    out = c.tmp / "r"
    _short_run(c, out)
    before = (out / "config.yaml").read_text()
    r = c.run(["-m", "pretrain", *SHORT, "--moco-m", "0.5", "--epochs", "2", "--output", str(out), "--resume"])
    return _res(r, "config.yaml unchanged" if (out / "config.yaml").read_text() == before else "config.yaml REWRITTEN")


def _one_run_grid(c: Ctx, name="g1") -> Path:
    p = c.tmp / f"{name}.yaml"
    p.write_text(f"name: {name}\nsweep:\n  - moco_m: [0.99]\nfixed: {{epochs: 1, max_steps: 2, subset: 512, "
                 f"moco_k: 256, knn_subset: 256, threads: 1}}\nseeds: 1\npresets:\n  tiny: {{}}\n")
    return p


def dry_run_retry(c: Ctx):
    g = _one_run_grid(c)
    r = c.run(["-m", "ablations", "run", str(g), "--preset", "tiny", "--executor", "debug"])
    summ = next((c.tmp / "runs").glob("g1/tiny/*/summary.json"))
    s = json.loads(summ.read_text())
    s["status"], s["reason"] = "diverged", "diverged: loss is nan (planted)"
    summ.write_text(json.dumps(s))
    r = c.run(["-m", "ablations", "run", str(g), "--preset", "tiny", "--executor", "local", "--dry-run",
               "--retry-failed"])
    return _res(r, "summary.json kept" if summ.exists() else "summary.json RENAMED by a dry run")


def results_not_a_table(c: Ctx):
    foo = c.tmp / "foo.csv"
    foo.write_text("foo,bar\n1,2\n")
    g = _one_run_grid(c)
    r = c.run(["-m", "ablations", "run", str(g), "--preset", "tiny", "--executor", "debug"],
              env={"MOCOBENCH_RESULTS": str(foo)})
    head = foo.read_text().splitlines()[0]
    return _res(r, "foo.csv untouched" if head == "foo,bar" else f"foo.csv REWRITTEN ({len(head.split(','))} columns)")


def results_corrupt(c: Ctx):
    bad = c.tmp / "bad.csv"
    bad.write_bytes(os.urandom(300))
    g = _one_run_grid(c)
    return _res(c.run(["-m", "ablations", "run", str(g), "--preset", "tiny", "--executor", "debug"],
                      env={"MOCOBENCH_RESULTS": str(bad)}))


def results_readonly(c: Ctx):
    g = _one_run_grid(c)
    return _res(c.run(["-m", "ablations", "run", str(g), "--preset", "tiny", "--executor", "debug"],
                      env={"MOCOBENCH_RESULTS": "/proc/mocobench/results.csv"}))


def report_not_a_table(c: Ctx):
    foo = c.tmp / "foo.csv"
    foo.write_text("foo,bar\n1,2\n")
    r = c.run(["-m", "reports", "--results", str(foo), "--out", str(c.tmp / "rep")])
    return _res(r, "report written" if (c.tmp / "rep").exists() and any((c.tmp / "rep").iterdir()) else "no report")


def report_garbage_rows(c: Ctx):
    import csv
    p = c.tmp / "garbage.csv"
    cols = ["grid", "run_id", "preset", "status", "mechanism", "moco_k", "moco_m", "seed", "knn_acc"]
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerow(["table1_momentum", "abc", "tiny", "finished??", "moco", "4096", "0.99", "0", "seventy"])
    r = c.run(["-m", "reports", "--results", str(p), "--out", str(c.tmp / "rep2")])
    return _res(r)


def stale_temp(c: Ctx):
    out = c.tmp / "t"
    _short_run(c, out, ["--epochs", "2"])
    (out / "summary.json").unlink()
    tmp = out / ".checkpoint.pth.k1ll3d.tmp"
    tmp.write_bytes(b"\0" * 1_000_000)
    r = c.run(["-m", "pretrain", *SHORT, "--epochs", "2", "--output", str(out), "--resume"])
    return _res(r, "stale temp removed" if not tmp.exists() else "stale temp LEFT")


def knn_t_zero(c: Ctx):
    return _res(c.run(["-m", "pretrain", *SHORT, "--knn-t", "0", "--output", str(c.tmp / "k0")]))


def moco_t_inf(c: Ctx):
    return _res(c.run(["-m", "pretrain", *SHORT, "--moco-t", "inf", "--output", str(c.tmp / "tinf")]))


def k_above_n_queue(c: Ctx):
    return _res(c.run(["-m", "pretrain", *SHORT, "--moco-k", "4096", "--output", str(c.tmp / "kq")]))


def k_above_n_bank(c: Ctx):
    return _res(c.run(["-m", "pretrain", *SHORT, "--mechanism", "memory_bank", "--moco-k", "4096",
                       "--output", str(c.tmp / "kb")]))


def output_is_file(c: Ctx):
    f = c.tmp / "afile"
    f.write_text("x")
    return _res(c.run(["-m", "pretrain", *SHORT, "--output", str(f)]))


def output_readonly(c: Ctx):
    ro = Path("/tmp/romnt")
    if not (ro.is_dir() and not os.access(ro, os.W_OK) or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True).returncode == 0):
        target = "/proc/mocobench/run"             # cannot mount: a directory nobody can create
    else:
        target = str(ro / "run")
    return _res(c.run(["-m", "pretrain", *SHORT, "--output", target]))


def ckpt_without_rng(c: Ctx):
    out = c.tmp / "norng"
    _short_run(c, out, ["--epochs", "2"])
    (out / "summary.json").unlink()
    subprocess.run([PY, "-c", "import torch,sys; p=sys.argv[1]; ck=torch.load(p, weights_only=False); "
                    "ck.pop('rng'); ck['epoch']=1; torch.save(ck, p)", str(out / "checkpoint.pth")], check=True)
    return _res(c.run(["-m", "pretrain", *SHORT, "--epochs", "2", "--output", str(out), "--resume"]))


def truncated_summary(c: Ctx):
    out = c.tmp / "trunc"
    _short_run(c, out)
    s = (out / "summary.json").read_text()
    (out / "summary.json").write_text(s[: len(s) // 2])
    return _res(c.run(["-m", "pretrain", *SHORT, "--output", str(out), "--resume"]))


def binary_preset(c: Ctx):
    p = c.tmp / "bin.yaml"
    p.write_bytes(bytes(range(256)) * 2)
    return _res(c.run(["-m", "pretrain", "--preset", str(p), "--print-config"]))


def _preset_key(c: Ctx, text: str, key: str):
    """``--print-config`` of a preset file ``text`` (on top of tiny): the exit and the resolved ``key`` line."""
    p = c.tmp / "p.yaml"
    p.write_text("_base_: tiny\n" + text)
    r = c.run(["-m", "pretrain", "--preset", str(p), "--print-config"])
    return _res(r, next((ln for ln in r.stdout.splitlines() if ln.startswith(key)), ""))


def yaml_off(c: Ctx):
    return _preset_key(c, "shuffle_bn: off\n", "shuffle_bn")


def yaml_bool_int(c: Ctx):
    return _preset_key(c, "moco_k: true\n", "moco_k")


def yaml_duplicate(c: Ctx):
    return _preset_key(c, "moco_m: 0.9\nmoco_m: 0.999\n", "moco_m")


def set_swept_key(c: Ctx):
    r = c.run(["-m", "ablations", "run", "table1_momentum", "--preset", "tiny", "--executor", "local", "--dry-run",
               "--seeds", "1", "--set", "moco_m=0.9"])
    n = r.stdout.splitlines()[0] if r.stdout else ""
    return _res(r, n[:90])


def set_subset_drop_k(c: Ctx):
    r = c.run(["-m", "ablations", "run", "fig3_mechanisms", "--preset", "tiny", "--executor", "local", "--dry-run",
               "--seeds", "1", "--set", "subset=2000"])
    big = sum(" moco_k=4096" in ln or " moco_k=16384" in ln for ln in r.stdout.splitlines())
    return _res(r, f"{big} planned run(s) with K > subset")


CASES = {f.__name__: f for f in (two_owners, refused_resume, dry_run_retry, results_not_a_table, results_corrupt,
                                 results_readonly, report_not_a_table, report_garbage_rows, stale_temp, knn_t_zero,
                                 moco_t_inf, k_above_n_queue, k_above_n_bank, output_is_file, output_readonly,
                                 ckpt_without_rng, truncated_summary, binary_preset, yaml_off, yaml_bool_int,
                                 yaml_duplicate, set_swept_key, set_subset_drop_k)}

# the cases of each area (scripts/hostile_<area>.py, each with its own CASES dict), after this file's own
for _mod in sorted(Path(__file__).resolve().parent.glob("hostile_*.py")):
    if _mod.stem not in ("hostile_common", "hostile_inputs"):
        _cases = importlib.import_module(_mod.stem).CASES
        if set(_cases) & set(CASES):
            raise SystemExit(f"{_mod.name}: case names already taken: {sorted(set(_cases) & set(CASES))}")
        CASES.update(_cases)


def _cell(row: dict | None) -> str:
    if row is None:
        return "(not run)"
    what = " | ".join(x for x in (("traceback " if row["traceback"] else "") + row["check"], row["stderr"]) if x)
    return f"{row['exit']} {'ok' if holds(row) else 'FAILS'}: {what[:110]}".replace("|", "/").replace("\n", " ")


def markdown(before: dict, after: dict) -> str:
    """The before/after table: one row per case, then how many cases keep the contract on each side."""
    lines = ["| case | before (exit, contract: what) | after (exit, contract: what) |", "| --- | --- | --- |"]
    for name in after:
        lines.append(f"| `{name}` | {_cell(before.get(name))} | {_cell(after[name])} |")
    nb = sum(holds(before[n]) for n in after if n in before)
    na = sum(holds(r) for r in after.values())
    lines.append("")
    lines.append(f"{len(after)} cases: the contract holds in {nb} of {sum(n in before for n in after)} before, "
                 f"{na} of {len(after)} after.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--only", nargs="*", default=None, choices=sorted(CASES))
    ap.add_argument("--json", default="", help="also write the results as JSON")
    ap.add_argument("--before", default="", help="the --json of a run against another checkout: compare")
    ap.add_argument("--markdown", default="", help="with --before: write the before/after table here")
    args = ap.parse_args(argv)
    rows = {}
    for name in args.only or CASES:
        tmp = Path(tempfile.mkdtemp(prefix=f"hostile-{name}-"))
        try:
            rows[name] = CASES[name](Ctx(Path(args.repo), tmp))
        except Exception as e:  # noqa: BLE001 - a case that cannot even be set up is reported, not fatal
            rows[name] = {"exit": "setup failed", "stderr": f"{type(e).__name__}: {e}"[:200], "traceback": False,
                          "check": ""}
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        r = rows[name]
        print(f"{name:22s} exit {r['exit']:6s} {'ok   ' if holds(r) else 'FAILS'} "
              f"{'TRACEBACK ' if r['traceback'] else ''}{r['check']:30s} {r['stderr']}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    if args.before:
        table = markdown(json.loads(Path(args.before).read_text()), rows)
        print(table)
        if args.markdown:
            Path(args.markdown).write_text(table)
    print(f"{sum(holds(r) for r in rows.values())} of {len(rows)} cases keep the contract")
    return 0


if __name__ == "__main__":
    sys.exit(main())
