"""Impossible configs are refused: each case below is one clear `error: ...` line and exit 2 (or a UserError from
the API), never an exit 0 or a confusing message. Nothing here trains."""
import pytest
import yaml

from conftest import synthetic_overrides
from ablations import __main__ as ablations_cli
from ablations import launcher as L
from ablations.grid import expand, load_grid
from pretrain import __main__ as pretrain_cli
from pretrain.config import load_config
from pretrain.base.yamlio import read_yaml_mapping
from pretrain.base.errors import UserError


def refused(main, argv, capsys) -> str:
    """Run a CLI's main(argv); it must exit 2 with exactly one `error: ...` line on stderr; returns the line."""
    with pytest.raises(SystemExit) as e:
        rc = main(argv)
        raise SystemExit(rc)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), (e.value.code, err)
    return err[0]


def print_config(argv, capsys) -> dict:
    """`python -m pretrain --print-config` with argv: exit 0, the resolved config."""
    assert pretrain_cli.main([*argv, "--print-config"]) == 0
    return yaml.safe_load(capsys.readouterr().out)


@pytest.fixture
def grid_env(tmp_path, monkeypatch):
    """Run directories and results table of the ablation CLI in tmp_path (a dry run reads both)."""
    monkeypatch.setenv("MOCOBENCH_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MOCOBENCH_RESULTS", str(tmp_path / "results.csv"))
    return tmp_path


def dry_run(grid: str, *extra: str) -> list[str]:
    return ["run", grid, "--preset", "tiny", "--executor", "local", "--dry-run", "--no-bench", "--seeds", "1", *extra]


# -- 1. temperatures, lr, momentum, fail_loss_frac: finite and in range ----------------------------------------
@pytest.mark.parametrize("flag,value,message", [
    ("--moco-t", "inf", "moco_t (tau) must be a finite number, got inf"),
    ("--moco-t", "nan", "moco_t (tau) must be a finite number, got nan"),          # refused before too
    ("--knn-t", "0", "knn_t (the kNN temperature) must be > 0, got 0.0"),
    ("--knn-t", "-1", "knn_t (the kNN temperature) must be > 0, got -1.0"),
    ("--knn-t", "inf", "knn_t (the kNN temperature) must be a finite number, got inf"),
    ("--lr", "inf", "lr must be a finite number, got inf"),
    ("--moco-m", "nan", "moco_m (m) must be a finite number, got nan"),            # refused before too
    ("--bank-m", "nan", "bank_m must be a finite number, got nan"),                # refused before too
    ("--fail-loss-frac", "inf", "fail_loss_frac must be a finite number, got inf"),
    ("--fail-loss-frac", "nan", "fail_loss_frac must be a finite number, got nan"),
])
def test_non_finite_or_non_positive_temperatures_and_rates_are_refused(flag, value, message, capsys):
    assert refused(pretrain_cli.main, ["--preset", "tiny", flag, value, "--print-config"], capsys) == \
        f"error: {message}"


def test_finite_positive_temperatures_still_pass(capsys):
    c = print_config(["--preset", "tiny", "--moco-t", "0.2", "--knn-t", "0.07", "--fail-loss-frac", "1.0"], capsys)
    assert (c["moco_t"], c["knn_t"], c["fail_loss_frac"]) == (0.2, 0.07, 1.0)


# -- 2. K <= N for the queue and the memory bank ---------------------------------------------------------------
@pytest.mark.parametrize("mechanism", ["moco", "memory_bank"])
def test_k_above_the_subset_is_refused_before_any_data_is_read(mechanism, capsys):
    line = refused(pretrain_cli.main, ["--preset", "tiny", "--mechanism", mechanism, "--subset", "2000",
                                       "--print-config"], capsys)
    assert line.startswith(f"error: moco_k (K) 4096 is larger than subset 2000 (the pretraining images) for "
                           f"mechanism {mechanism}: ")
    assert "use --moco-k <= 2000 or a larger subset" in line and "'drop_k_above: subset'" in line


def test_k_equal_to_the_subset_and_end_to_end_pass(capsys):
    assert print_config(["--preset", "tiny", "--subset", "4096"], capsys)["moco_k"] == 4096
    # end_to_end: K = the batch (128 at tiny), not the preset's 4096
    c = print_config(["--preset", "tiny", "--mechanism", "end_to_end", "--subset", "2000"], capsys)
    assert (c["moco_k"], c["batch_size"]) == (128, 128)


@pytest.mark.parametrize("mechanism", ["moco", "memory_bank"])
def test_k_above_the_images_of_the_dataset_is_refused_when_the_data_is_built(mechanism, tmp_path):
    """subset 0 = the whole set, known only once loaded: the synthetic set has 64 training images."""
    from pretrain.engine.trainer import Trainer
    cfg = load_config("tiny", synthetic_overrides(subset=0, moco_k=128, mechanism=mechanism))
    with pytest.raises(UserError) as e:
        Trainer(cfg, tmp_path, progress=False)
    msg = str(e.value)
    assert msg.startswith(f"moco_k (K) 128 is larger than the 64 training images for mechanism {mechanism}: ")
    assert "use --moco-k <= 64 " in msg and "'drop_k_above: subset'" in msg


def test_set_k_above_the_subset_is_refused_not_dropped(grid_env, capsys):
    """table1's K is fixed (not swept): --set moco_k=65536 is every run's K, refused rather than silently
    dropped or run."""
    line = refused(ablations_cli.main, dry_run("table1_momentum", "--set", "moco_k=65536"), capsys)
    subset = load_config("tiny").subset
    assert line.startswith(f"error: moco_k (K) 65536 is larger than subset {subset} (the pretraining images)")


def test_drop_k_above_subset_reads_the_subset_of_set(grid_env, capsys):
    assert ablations_cli.main(dry_run("fig3_mechanisms", "--set", "subset=2000")) == 0
    out = capsys.readouterr().out
    assert "moco_k=1024 " in out and "moco_k=4096" not in out         # K > 2000 dropped, K <= 2000 kept
    runs = expand(load_grid("fig3_mechanisms"), "tiny", seeds=1, sets={"subset": 2000})
    assert sorted({r.overrides["moco_k"] for r in runs}) == [256, 1024]
    assert {r.overrides["subset"] for r in runs} == {2000}


# -- 3a. YAML: a key written twice, a file that is not text ----------------------------------------------------
def test_duplicate_key_in_a_preset_names_the_file_the_key_and_its_line(tmp_path, capsys):
    p = tmp_path / "dup.yaml"
    p.write_text("_base_: tiny\nmoco_k: 1024\nepochs: 2\nmoco_k: 2048\n")
    line = refused(pretrain_cli.main, ["--preset", str(p), "--print-config"], capsys)
    assert line == (f"error: {p}: duplicate key 'moco_k' at line 4 (first at line 2); YAML would keep only the "
                    f"last value: remove one")


def test_duplicate_key_nested_in_a_grid(tmp_path):
    g = tmp_path / "g.yaml"
    g.write_text("name: g\nsweep:\n  - moco_m: [0.9, 0.99]\npresets:\n  tiny:\n    seeds: 1\n    why: a\n"
                 "    seeds: 2\n")
    with pytest.raises(UserError, match=r"g\.yaml: duplicate key 'seeds' at line 8 \(first at line 6\)"):
        load_grid(str(g))
    g.write_text("name: g\nsweep: [{moco_m: 0.9, moco_m: 0.99}]\npresets: {tiny: {}}\n")   # flow style, one line
    with pytest.raises(UserError, match=r"duplicate key 'moco_m' at line 2 \(first at line 2\)"):
        load_grid(str(g))


def test_merge_keys_and_the_same_key_in_different_mappings_are_not_duplicates(tmp_path):
    p = tmp_path / "ok.yaml"
    p.write_text("a: &base {x: 1, y: 2}\nb:\n  <<: *base\n  x: 3\nc: {x: 1}\n")
    assert read_yaml_mapping(p, "a test") == {"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 2}, "c": {"x": 1}}


def test_a_binary_preset_is_one_error_line(tmp_path, capsys):
    p = tmp_path / "p.yaml"
    p.write_bytes(b"moco_k: 1\n\xff\xfe\x00\x81 binary")
    line = refused(pretrain_cli.main, ["--preset", str(p), "--print-config"], capsys)
    assert line == f"error: {p}: not a UTF-8 text file (byte 10 is 0xff); a preset must be a YAML text file"


# -- 3b. YAML booleans for the string keys: shuffle_bn: off ----------------------------------------------------
def test_unquoted_shuffle_bn_off_is_the_choice_off(tmp_path, capsys):
    p = tmp_path / "off.yaml"
    p.write_text("_base_: tiny\nshuffle_bn: off\n")
    assert print_config(["--preset", str(p)], capsys)["shuffle_bn"] == "off"
    assert load_config("tiny", {"shuffle_bn": False}).shuffle_bn == "off"


def test_unquoted_shuffle_bn_on_says_how_to_quote(tmp_path, capsys):
    p = tmp_path / "on.yaml"
    p.write_text("_base_: tiny\nshuffle_bn: on\n")
    line = refused(pretrain_cli.main, ["--preset", str(p), "--print-config"], capsys)
    assert line == ("error: config key 'shuffle_bn': got true, a YAML boolean (unquoted on/off/yes/no/true/false); "
                    "quote the value, e.g. shuffle_bn: \"off\" (choices: auto, ddp, split, off, sync)")


def test_a_boolean_for_a_string_key_without_off_is_refused():
    with pytest.raises(UserError, match=r"config key 'mechanism': got false, a YAML boolean .* e\.g\. "
                                        r"mechanism: \"moco\" \(choices: moco, end_to_end, memory_bank\)"):
        load_config("tiny", {"mechanism": False})


def test_set_shuffle_bn_off_in_the_ablation_cli(grid_env, capsys):
    """`--set shuffle_bn=off` (YAML: False) on a grid that does not sweep it: every run's shuffle_bn is 'off'."""
    assert ablations_cli.main(dry_run("table1_momentum", "--set", "shuffle_bn=off")) == 0
    _, planned = L.plan("table1_momentum", "tiny", grid_env / "runs", sets={"shuffle_bn": False}, seeds=1)
    assert len(planned) == 4 and {p.cfg.shuffle_bn for p in planned} == {"off"}


# -- 3c. integer and float keys refuse YAML booleans -----------------------------------------------------------
@pytest.mark.parametrize("key,value,expected", [("moco_k", True, "an integer"), ("epochs", False, "an integer"),
                                                ("lr", True, "a number"), ("moco_m", False, "a number"),
                                                ("schedule", [True, 3], "a list of integers")])
def test_numeric_keys_refuse_booleans(key, value, expected):
    word = "true" if (value[0] if isinstance(value, list) else value) else "false"
    with pytest.raises(UserError) as e:
        load_config("tiny", {key: value})
    assert str(e.value) == f"config key '{key}': expected {expected}, got {word} (a YAML boolean)"


def test_moco_k_true_in_a_preset_file(tmp_path, capsys):
    p = tmp_path / "k.yaml"
    p.write_text("_base_: tiny\nmoco_k: true\n")
    assert refused(pretrain_cli.main, ["--preset", str(p), "--print-config"], capsys) == \
        "error: config key 'moco_k': expected an integer, got true (a YAML boolean)"


# -- 4. grid --set: not on a swept key; drop_k_above after --set -----------------------------------------------
@pytest.mark.parametrize("grid,key", [("table1_momentum", "moco_m"), ("fig3_mechanisms", "batch_size"),
                                      ("figA1_shuffle_bn", "shuffle_bn"), ("v2_table1", "epochs")])
def test_set_on_a_swept_key_is_refused(grid, key, grid_env, capsys):
    line = refused(ablations_cli.main, dry_run(grid, "--set", f"{key}=1"), capsys)
    assert line == (f"error: --set {key}: grid {grid} sweeps {key} (its runs differ in it), so --set would give "
                    f"them all one {key} under their swept labels; drop --set {key} or run a grid file of your own")


def test_set_of_unswept_keys_and_seed_still_work(grid_env, capsys):
    assert ablations_cli.main(dry_run("table1_momentum", "--set", "epochs=1", "--set", "knn_k=20")) == 0
    _, planned = L.plan("table1_momentum", "tiny", grid_env / "runs", sets={"epochs": 1, "seed": 3})
    assert sorted(p.cfg.moco_m for p in planned) == [0.0, 0.9, 0.99, 0.999]             # tiny drops 0.9999
    assert {(p.cfg.epochs, p.cfg.seed) for p in planned} == {(1, 3)}


def test_set_of_an_unknown_key_names_it(grid_env, capsys):
    assert refused(ablations_cli.main, dry_run("table1_momentum", "--set", "subst=5000"), capsys) == \
        "error: unknown config key 'subst' in --set (did you mean 'subset'?)"


def test_set_subset_that_drops_every_run_is_refused_not_an_empty_grid():
    """``--set subset=1024`` on table1_momentum (K 4096 fixed): drop_k_above would drop all of it; exit 0 with
    zero runs would look like success."""
    from ablations.grid import expand, load_grid
    g = load_grid("table1_momentum")
    with pytest.raises(UserError, match=r"every run has K \(4096\) above the 1024 pretraining images"):
        expand(g, "tiny", seeds=1, sets={"subset": 1024})
    runs = expand(g, "tiny", seeds=1, sets={"subset": 1024, "moco_k": 1024})
    assert len(runs) == 4 and {r.overrides["moco_k"] for r in runs} == {1024}


@pytest.mark.parametrize("flag,choice", [("--mechanism", "moco"), ("--shuffle-bn", "split"), ("--dataset", "cifar10"),
                                         ("--arch", "resnet18"), ("--precision", "bf16"), ("--knn-feature", "head"),
                                         ("--augment-on", "batched")])
def test_help_lists_the_choices_of_enumerated_flags_and_argparse_refuses_others(flag, choice, capsys):
    with pytest.raises(SystemExit) as e:
        pretrain_cli.parse(["--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    line = next(ln for ln in help_text.splitlines() if ln.strip().startswith(flag + " {"))
    assert choice in line
    with pytest.raises(SystemExit) as e:
        pretrain_cli.parse([flag, "nonsense"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument {flag}: invalid choice: 'nonsense' (choose from" in err and choice in err
