"""Bad input to `scaleinv train`: a clear error naming the field (and allowed values), exit code 2,
nothing written. Also config precedence (preset < TOML < --set)."""
from pathlib import Path

import pytest

from scaleinv.cli import main
from scaleinv.cli.train import build_config, add_arguments
from sibert.config import OPTIMIZERS, ConfigError, preset, validate

SAMPLE = str(Path(__file__).parent / "data" / "sample")


@pytest.mark.parametrize("argv, needle", [
    (["--set", "nope=1"], "nope"),
    (["--set", "lr=-1"], "lr"),
    (["--set", "weight_decay=-0.1"], "weight_decay"),
    (["--set", "clip_C=1"], "clip_C"),
    (["--set", "clip_C=0.5"], "clip_C"),
    (["--set", "seq_len=600"], "seq_len"),
    (["--set", "hidden=abc"], "hidden"),
    (["--set", "steps=1.5"], "steps"),
    (["--set", "heads=3"], "heads"),
    (["--set", "progress=maybe"], "progress"),
    (["--set", "head_optimizer=sgd"], "head_optimizer"),
    (["--set", "source=/no/such/dir"], "source"),
    (["--set", "lr"], "key=value"),
    (["--config", "/no/such/file.toml"], "config file"),
])
def test_bad_config_exit_2_nothing_written(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and "error" in err, err
    assert not out.exists()


@pytest.mark.parametrize("argv, needle", [
    (["--preset", "huge"], "tiny"), (["--model", "gpt"], "sibert"), (["--optimizer", "nope"], "sgd-wd-rgc"),
])
def test_bad_choice_lists_allowed_values(tmp_path, capsys, argv, needle):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1 and not out.exists()


def test_resume_missing_checkpoint_dir(tmp_path, capsys):
    out = tmp_path / "never_ran"
    assert main(["train", "--out", str(out), "--resume"]) == 2
    assert "--resume" in capsys.readouterr().err and not out.exists()


def test_error_messages_list_allowed_values():
    with pytest.raises(ConfigError, match="allowed: sibert, bert"):
        preset("tiny", "gpt")
    with pytest.raises(ConfigError, match="allowed: " + ", ".join(OPTIMIZERS)):
        preset("tiny", "sibert", "nope")
    with pytest.raises(ConfigError, match="allowed: mini, tiny, small, base"):
        preset("xl")


def test_precedence_and_paper_defaults(tmp_path):
    import argparse
    toml = tmp_path / "c.toml"
    toml.write_text('[train]\nlr = 0.5\nsteps = 7\nsource = "%s"\n' % SAMPLE)
    p = argparse.ArgumentParser()
    add_arguments(p)
    cfg = build_config(p.parse_args(["--out", str(tmp_path / "r"), "--config", str(toml),
                                     "--set", "steps=9", "--seed", "4"]))
    assert (cfg.lr, cfg.steps, cfg.seed, cfg.model, cfg.optimizer) == (0.5, 9, 4, "sibert", "sgd-wd-rgc")
    base = validate(preset("base", "sibert"))
    assert (base.lr, base.weight_decay, base.clip_C, base.head_optimizer) == (8e-4, 1e-2, 4.0, "lamb")
    assert base.lr_drop_fractions == (0.6, 0.9)
    bert = preset("tiny", "bert")
    assert (bert.optimizer, bert.head_optimizer) == ("adamw", "adamw")
    assert preset("tiny", "sibert", "sgd").weight_decay == 0.0


def test_resume_refuses_changing_the_recipe(tmp_path, capsys):
    import json
    from sibert.config import preset as _preset
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(_preset("tiny").to_dict()))
    before = sorted(p.name for p in run.rglob("*"))
    assert main(["train", "--out", str(run), "--resume", "--set", "lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "lr (0.1 -> 0.5)" in err and "eval_every" in err  # names the field and the allowed ones
    assert err.count("\n") == 1
    assert main(["train", "--out", str(run), "--resume", "--model", "bert"]) == 2
    assert "model" in capsys.readouterr().err
    assert sorted(p.name for p in run.rglob("*")) == before


def test_out_dir_not_empty_without_resume(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "x").write_text("keep")
    assert main(["train", "--out", str(run)]) == 2
    assert "--out" in capsys.readouterr().err and [p.name for p in run.iterdir()] == ["x"]
