"""The experiment layer: every experiments/*.toml parses and its code path runs end to end at tiny
shapes (records, tables, figures), the driver resumes, and the trainer's experiment options
(rotational optimizers, encoder warmup, per-layer angles) behave as documented."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import tiny_overrides  # noqa: E402

from sibert import experiment as ex
from sibert.config import ConfigError, apply_overrides, preset
from sibert.train import predicted_equilibrium_angle, sgd_schedule, train

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "experiments").glob("*.toml"))


def _read(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines() if l.strip()]


def _tiny(tmp_path, **kw):
    over = tiny_overrides(tmp_path / "cache", steps=6, eval_every=3, ckpt_every=3, **kw)
    return {k: str(v) for k, v in over.items()}


def test_experiment_files_exist_and_parse():
    names = {p.stem for p in CONFIGS}
    assert {"main", "robustness", "warmup"} <= names
    for i, p in enumerate(CONFIGS):
        e = ex.load_experiment(p, i)
        assert e.runs and e.figures and e.name == p.stem
        for r in e.runs:
            cfg = r.config(e.preset)
            assert cfg.model == r.model and cfg.optimizer == r.optimizer
    rob = ex.load_experiment(REPO / "experiments" / "robustness.toml")
    wd = [r for r in rob.runs if r.group == "wd"]
    assert sorted({r.overrides["init_scale"] for r in wd}) == [0.1, 1, 10, 100]
    assert len({r.overrides["seed"] for r in wd}) >= 2
    # seed 0 of every experiment runs before any seed 1
    order = ex.plan([ex.load_experiment(p, i) for i, p in enumerate(CONFIGS)])
    seeds = [r.order[1] for r in order if r.order[0] == 0]
    assert seeds == sorted(seeds)


def test_only_is_a_priority_list_and_shards_partition_the_plan(tmp_path, capsys):
    rob = [ex.load_experiment(REPO / "experiments" / "robustness.toml")]
    names = [r.name for r in ex.plan(rob, "nowd_s0_c1,wd_s0_*")]
    assert names[0] == "nowd_s0_c1" and sorted(names[1:]) == sorted(
        r.name for r in rob[0].runs if r.name.startswith("wd_s0_"))
    assert [r.name for r in ex.plan(rob, "nothing*")] == []
    # drivers with --shard k/n train disjoint sets of runs that together are the whole plan
    trained = []
    for k in range(5):
        ex.run_experiments(rob, tmp_path / "runs", tmp_path / "res", shard=(k, 5), report=False,
                           train_fn=lambda cfg, rd, resume, log: trained.append(rd.name), log=lambda m: None)
    assert sorted(trained) == sorted(r.name for r in rob[0].runs)
    assert not (tmp_path / "res").exists()    # report=False: no records, tables or figures
    for bad in ("3/3", "a/b", "1", "-1/2"):
        assert ex.main([str(REPO / "experiments" / "robustness.toml"), f"--shard={bad}", "--runs",
                        str(tmp_path / "r"), "--results", str(tmp_path / "o")]) == 2
        assert "--shard" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


def test_bad_experiment_file_names_the_key(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('name = "x"\npreset = "tiny"\n[[group]]\nname = "g"\nmodel = "sibert"\noptimizer = "adam"\n')
    with pytest.raises(ConfigError, match="optimizer"):
        ex.load_experiment(p)
    p.write_text('name = "x"\npreset = "tiny"\n')
    with pytest.raises(ConfigError, match="group"):
        ex.load_experiment(p)
    assert ex.main([str(p), "--runs", str(tmp_path / "r"), "--results", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "r").exists() and not (tmp_path / "o").exists()


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("config", [p.stem for p in CONFIGS])
def test_each_experiment_code_path_runs_at_tiny_shapes(tmp_path, config):
    exp = ex.load_experiment(REPO / "experiments" / f"{config}.toml")
    groups = {}
    for r in exp.runs:  # one run per group, two for the first group (a second init scale / LR)
        groups.setdefault(r.group, [])
        if len(groups[r.group]) < (2 if not groups or r.group == exp.runs[0].group else 1):
            groups[r.group].append(r.name)
    picked = [n for g in groups.values() for n in g]
    args = [str(REPO / "experiments" / f"{config}.toml"), "--runs", str(tmp_path / "runs"),
            "--results", str(tmp_path / "res")]
    for k, v in _tiny(tmp_path).items():
        args += ["--set", f"{k}={v}"]
    for name in picked:
        assert ex.main(args + ["--only", name]) == 0
    out = tmp_path / "res" / exp.name
    rows = json.loads((out / "table.json").read_text())
    assert sorted(r["run"] for r in rows) == sorted(picked)
    for r in rows:
        assert r["steps"] == 6 and np.isfinite(r["heldout_loss"])
        assert (out / f"{r['run']}.metrics.jsonl").is_file() and (out / f"{r['run']}.eval.jsonl").is_file()
    assert "| run |" in (out / "table.md").read_text()
    for fig in exp.figures:
        pngs = {"robustness": ["robustness_loss.png", "robustness_norm.png"], "main_comparison": ["main.png"],
                "warmup": ["warmup_lr.png", "warmup_angles.png"]}[fig]
        for png in pngs:
            assert (out / png).stat().st_size > 5000


@pytest.mark.timeout(1200)
def test_driver_resumes_and_skips_finished_runs(tmp_path):
    exp_file = tmp_path / "e.toml"
    exp_file.write_text('name = "e"\npreset = "tiny"\nfigures = ["main_comparison"]\n'
                        '[[group]]\nname = "g"\nmodel = "sibert"\noptimizer = "sgd-wd-rgc"\n'
                        'grid = { seed = [0, 1] }\n')
    exps = [ex.load_experiment(exp_file)]
    extra = {k: v for k, v in _tiny(tmp_path).items()}
    calls = []

    def fake_interrupt(cfg, run_dir, resume, log):
        calls.append((Path(run_dir).name, resume))
        # a crash between the step-3 and the step-6 checkpoints: the last checkpoint and the
        # summary are gone, the step-3 checkpoint is intact
        train(cfg, run_dir, log=log)
        import shutil

        shutil.rmtree(Path(run_dir) / "checkpoints" / "6")
        (Path(run_dir) / "summary.json").unlink()
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ex.run_experiments(exps, tmp_path / "runs", tmp_path / "res", extra=extra, train_fn=fake_interrupt, log=lambda s: None)
    assert calls == [("g_s0", False)]
    assert ex.run_state(tmp_path / "runs" / "e" / "g_s0", 6) == "resume"
    seen = []

    def real(cfg, run_dir, resume, log):
        seen.append((Path(run_dir).name, resume))
        return train(cfg, run_dir, resume=resume, log=log)

    assert ex.run_experiments(exps, tmp_path / "runs", tmp_path / "res", extra=extra, train_fn=real, log=lambda s: None) == 2
    assert seen == [("g_s0", True), ("g_s1", False)]
    m = _read(tmp_path / "runs" / "e" / "g_s0" / "metrics.jsonl")
    assert [r["step"] for r in m] == list(range(6))
    # everything done: nothing is trained again
    assert ex.run_experiments(exps, tmp_path / "runs", tmp_path / "res", extra=extra, train_fn=real, log=lambda s: None) == 0
    # a fresh checkout (run directories gone, committed records kept) knows the runs are done
    import shutil

    shutil.rmtree(tmp_path / "runs")
    assert ex.run_experiments(exps, tmp_path / "runs", tmp_path / "res", extra=extra, train_fn=real, log=lambda s: None) == 0
    rows = ex.summarize(exps[0], tmp_path / "runs", tmp_path / "res")
    assert [r["run"] for r in rows] == ["g_s0", "g_s1"] and all(r["steps"] == 6 for r in rows)


def test_sgd_warmup_schedule():
    s = sgd_schedule(1.0, 100, (0.6,), warmup_frac=0.1)
    assert [float(s(t)) for t in (0, 4, 9, 10, 59, 60)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0, 0.1])
    assert float(sgd_schedule(1.0, 100, (0.6,))(0)) == 1.0  # the SIBERT recipe: no warmup


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("opt", ["rv-sgd-wd", "rv-adamw"])
def test_rotational_encoder_optimizers_keep_norms_and_rotate_at_the_predicted_angle(tmp_path, opt):
    over = tiny_overrides(tmp_path / "cache", steps=12, lr=0.05 if opt == "rv-sgd-wd" else 1e-3,
                          weight_decay=0.1, warmup_frac=0.0, lr_drops="0.99")
    cfg = apply_overrides(preset("tiny", "sibert", opt), over)
    s = train(cfg, tmp_path / "run", log=lambda s: None)
    assert s["status"] == "ok"
    m = _read(tmp_path / "run" / "metrics.jsonl")
    pred = predicted_equilibrium_angle(cfg, m[3]["lr"])
    layer = [k for k in m[0] if k.startswith("angle/") and k.endswith("kernel")]
    assert layer, "per-layer angles are logged"
    for k in layer:
        norms = [r["norm/" + k[len("angle/"):]] for r in m]
        assert np.allclose(norms, norms[0], rtol=1e-4)              # every matrix keeps its norm
        # rotates by arctan(eta_r ||u_t|| / sqrt(EMA ||u||^2)); at step t the EMA
        # s_t >= (1 - beta) ||u_t||^2 with bias correction 1 - beta^t bounds the rotation by
        # arctan(eta_r sqrt((1 - beta^t)/(1 - beta))) (beta = 0.9)
        # (step 0 also moves the weights by the one-off zero-mean centring: not compared)
        assert np.median([r[k] for r in m[1:]]) > 0.2 * pred                # it does rotate
        for r in m[1:]:
            t = r["step"] + 1
            assert 0 < r[k] <= np.arctan(pred * np.sqrt((1 - 0.9**t) / 0.1)) * (1 + 1e-4), (k, r["step"], r[k])


def test_predicted_equilibrium_angle():
    sib = preset("tiny", "sibert")
    assert predicted_equilibrium_angle(sib, 0.1) == pytest.approx(np.sqrt(2 * 0.1 * sib.weight_decay))
    bert = preset("tiny", "bert")
    b1 = bert.adam_b1
    assert predicted_equilibrium_angle(bert, 1e-3) == pytest.approx(
        np.sqrt(2 * 1e-3 * bert.weight_decay * (1 - b1) / (1 + b1)))
    assert predicted_equilibrium_angle(preset("tiny", "sibert", "sgd"), 0.1) is None


@pytest.mark.timeout(1200)
def test_identical_run_of_another_experiment_is_reused_not_retrained(tmp_path):
    files = []
    for name in ("a", "b"):
        f = tmp_path / f"{name}.toml"
        f.write_text(f'name = "{name}"\npreset = "tiny"\nfigures = []\n'
                     '[[group]]\nname = "g"\nmodel = "sibert"\noptimizer = "sgd-wd-rgc"\n')
        files.append(f)
    exps = [ex.load_experiment(f, i) for i, f in enumerate(files)]
    seen = []

    def real(cfg, run_dir, resume, log):
        seen.append(str(run_dir))
        return train(cfg, run_dir, resume=resume, log=log)

    n = ex.run_experiments(exps, tmp_path / "runs", tmp_path / "res", extra=_tiny(tmp_path), train_fn=real,
                           log=lambda s: None)
    assert n == 1 and len(seen) == 1
    a, b = (tmp_path / "res" / x / "table.json" for x in ("a", "b"))
    ra, rb = json.loads(a.read_text())[0], json.loads(b.read_text())[0]
    assert ra["heldout_loss"] == rb["heldout_loss"] and ra["steps"] == rb["steps"] == 6



def test_spread_summary_states_both_spreads_from_finished_runs():
    """robustness: spread over c of the seed means against the largest seed-to-seed spread; runs
    in progress do not count; seeds of one recipe listed in two groups are pooled."""
    from sibert.experiment_figures import spread_md, spread_summary

    def row(group, c, seed, loss, status="ok", opt="sgd-wd-rgc"):
        return {"group": group, "model": "sibert", "optimizer": opt, "lr": 0.1, "weight_decay": 0.03,
                "warmup_frac": 0.0, "steps": 100, "init_scale": c, "seed": seed, "heldout_loss": loss,
                "status": status}

    rows = [row("wd", 1.0, 0, 5.80), row("wd", 100.0, 0, 5.90), row("wd_seed1", 1.0, 1, 5.86),
            row("wd_seed1", 100.0, 1, 5.88), row("wd", 10.0, 0, 9.0, status="in progress, 50/100 steps"),
            row("nowd", 1.0, 0, 5.5, opt="sgd"), row("nowd", 100.0, 0, 6.2, opt="sgd")]
    s = spread_summary(rows)
    assert set(s) == {"wd", "nowd"}
    wd = s["wd"]
    assert wd["loss"] == {"1": {"0": 5.8, "1": 5.86}, "100": {"0": 5.9, "1": 5.88}}   # c = 10 not finished
    assert wd["spread_over_c"] == {"0": 0.1, "1": 0.02}
    assert wd["seed_spread"] == {"1": 0.06, "100": 0.02}
    assert wd["spread_of_means"] == 0.06 and wd["max_seed_spread"] == 0.06
    assert wd["ratio"] == 1.0 and wd["holds"] is True and wd["complete"] is True
    assert s["nowd"]["holds"] is None and s["nowd"]["spread_over_c"] == {"0": 0.7}   # one seed: no verdict
    rows.append(row("nowd", 1.0, 1, 5.6, opt="sgd"))                                  # seed 1 at one scale only
    assert spread_summary(rows)["nowd"]["spread_over_c"] == {"0": 0.7}
    rows[3]["heldout_loss"] = 5.96                                                   # means 5.83 / 5.93
    assert spread_summary(rows)["wd"]["holds"] is False
    md = spread_md(spread_summary(rows))
    assert "| wd | sibert sgd-wd-rgc | 5.800 / 5.860 | 5.900 / 5.960 |" in md and "| no |" in md


def test_warmup_table_and_edge_flag(tmp_path):
    """warmup_gap.json / .md: best finished loss with and without warmup per optimizer, the gap, and
    whether a best LR is the smallest or largest LR run (the optimum may then lie outside)."""
    from sibert.experiment_figures import warmup_md

    by = {("adamw", False): [(1e-3, 5.9, True, "a"), (3e-3, 5.8, True, "b"), (1e-2, 6.0, True, "c")],
          ("adamw", True): [(1e-3, 5.7, True, "d"), (3e-3, 5.6, True, "e"), (1e-2, 9.9, False, "f")]}
    gap = {"adamw": {"gap": 0.2, "best_no_warmup": {"lr": 3e-3, "loss": 5.8}, "best_warmup": {"lr": 3e-3, "loss": 5.6},
                     "best_at_edge": []}}
    md = warmup_md(by, gap)
    assert "| adamw | 0.003 | 5.800 | 5.600 | +0.200 |" in md
    assert "| adamw | 0.01 | 6.000 | … | - |" in md          # the unfinished run is not reported
    assert "| adamw | 5.800 (0.003) | 5.600 (0.003) | **+0.200** | no |" in md
