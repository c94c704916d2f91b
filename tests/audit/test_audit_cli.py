"""`scaleinv audit MODULE:FACTORY`: table, JSON, markdown, exit codes, argument errors."""
import json

import pytest

from scaleinv.cli import main

FAST = ["--scales", "0.01,0.1,1,10,100", "--input-degrees", "0,1,2"]


def test_clean_toy_stack_json_and_markdown(tmp_path, capsys):
    js, md = tmp_path / "a.json", tmp_path / "a.md"
    rc = main(["audit", "scaleinv.audit.examples:toy_stack", "--kw", "layers=1", *FAST,
               "--json", str(js), "--markdown", str(md)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "target: loss 0-homogeneous in 'encoder' -> MET" in out
    data = json.loads(js.read_text())
    assert data["target_group"] == "encoder" and data["target_met"] is True and data["first_break"] is None
    rows = {r["name"]: r for r in data["rows"]}
    loss = rows["loss"]["degrees"]["encoder"]
    assert loss["status"] == "homogeneous" and loss["degree"] == 0 and loss["residual"] < 1e-4
    assert rows["encoder/layer_0"]["signature"]["notation"] == "(2;2)"
    assert [f["degree"] for f in rows["encoder/layer_0"]["in_degrees"]] == [2]
    assert rows["encoder/layer_0"]["degrees"]["encoder"]["degree"] == 2
    assert "| encoder/layer_0 " in md.read_text().replace("&nbsp;", "")


def test_broken_stack_exit_1_and_first_break(tmp_path, capsys):
    js = tmp_path / "b.json"
    rc = main(["audit", "scaleinv.audit.examples:toy_stack", "--kw", "layers=2", "--kw", "softmax_at=1",
               *FAST, "--no-signatures", "--json", str(js)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "first break: encoder/layer_1/attention" in out
    assert json.loads(js.read_text())["first_break"] == "encoder/layer_1/attention"


def test_cli_overrides_target_and_adds_groups(tmp_path, capsys):
    js = tmp_path / "c.json"
    rc = main(["audit", "scaleinv.audit.examples:toy_stack", "--kw", "layers=1", *FAST, "--no-signatures",
               "--group", "ffn=ffn/", "--target-group", "all", "--target-degree", "0", "--json", str(js)])
    assert rc == 1          # the loss is not 0-homogeneous in all parameters (the head is not)
    data = json.loads(js.read_text())
    assert data["target_group"] == "all" and data["target_met"] is False
    assert data["groups"]["ffn"] and all("ffn" in n for n in data["groups"]["ffn"])
    rows = {r["name"]: r for r in data["rows"]}
    assert rows["encoder/layer_0/ffn"]["degrees"]["ffn"]["degree"] == 2


@pytest.mark.parametrize("argv,msg", [
    (["--target-group", "nope"], "target_group 'nope' is not a group; allowed"),
    (["--kw", "layers"], "--kw must be NAME=VALUE"),
    (["--input-degrees", "a,b"], "--input-degrees must be comma-separated integers"),
    (["--group", "g=does_not_exist"], "group regex 'does_not_exist' selects no parameter"),
])
def test_bad_arguments_exit_2_with_message(argv, msg, capsys):
    rc = main(["audit", "scaleinv.audit.examples:toy_stack", "--kw", "layers=1", "--no-signatures", *FAST, *argv])
    assert rc == 2
    assert msg in capsys.readouterr().err


def test_bad_factory_exit_2(capsys):
    assert main(["audit", "scaleinv.audit.examples:no_such_factory"]) == 2
    assert "has no attribute 'no_such_factory'" in capsys.readouterr().err
    assert main(["audit", "scaleinv.audit.examples"]) == 2
    assert "factory must be 'module:function'" in capsys.readouterr().err


def test_python_api_audit_factory():
    from scaleinv.audit import audit_factory

    r = audit_factory("scaleinv.audit.examples:softplus_model", target_degree=0, signatures=False,
                      scales=(0.01, 1.0, 100.0))
    assert r.target_met is False and r.loss.degrees["all"].status == "not homogeneous"
    r = audit_factory("scaleinv.audit.examples:toy_stack", {"layers": 1}, signatures=False,
                      scales=(0.01, 1.0, 100.0))
    assert r.target_group == "encoder" and r.target_met is True   # factory options are the defaults
