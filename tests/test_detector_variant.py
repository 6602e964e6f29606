"""The default detector is the variant chosen on the development half (geometry/detector_variant.py).

- For a bundled model ``detect`` uses the variant its committed pre-registered evaluation chose (recorded in
  assets/precomputed/<model>/detector_variant.json, loaded from the shipped results), and says so in ``--json``
  (the old fields stay; ``variant`` names it, ``variant_choice`` says why).
- Any other model gets the documented fallback; an explicit ``--variant`` or the older piece-by-piece options
  are honoured; bad requests get one line.
- A record for other weights, another model, or a damaged one is not used (fallback).
"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import ROOT, zoo

from geometry import precomputed as pre
from geometry.cli import main
from geometry.detector_variant import (FALLBACK, VARIANT_FILE, parse_variant, recorded_variant, resolve_variant,
                                       variant_record, write_variant_record)
from geometry.errors import GeometryError
from geometry.preregistered import PAPER_DEFINITION
from geometry.subspace import model_fingerprint
from geometry.zoo import zoo_card

REPORTS = ROOT / "reports"
SMALL = ["--subspace-images", "12", "--m", "4", "--calibration-images", "30"]


def _chosen(model: str) -> dict:
    return json.loads((REPORTS / model / "detector_preregistered.json").read_text())["chosen"]


@pytest.mark.parametrize("model", sorted(p.parent.name for p in REPORTS.glob("*/detector_preregistered.json")))
def test_shipped_record_is_the_reports_choice(model, monkeypatch):
    monkeypatch.delenv(pre.ENV, raising=False)
    rec = json.loads((ROOT / "assets" / "precomputed" / model / VARIANT_FILE).read_text())
    assert rec["chosen"] == _chosen(model) and rec["model"] == model
    choice = resolve_variant(zoo(model))
    assert choice.source == "preregistered" and choice.variant.to_dict() == _chosen(model), \
        "run `make precompute` and commit assets/precomputed"


def test_detect_json_bundled_model_uses_the_preregistered_variant(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv(pre.ENV, raising=False)
    model = "mnist_lenet_relu"
    assert main(["detect", "--model", model, "--image", "gallery:3:0", "--cache-dir", str(tmp_path / "c"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["variant"] == _chosen(model)
    ch = out["variant_choice"]
    assert ch["source"] == "preregistered" and ch["requested"] == "preregistered"
    assert ch["file"].endswith(f"{model}/{VARIANT_FILE}") and ch["paper_definition"] == PAPER_DEFINITION.to_dict()
    assert pre.is_shipped(out["detector_path"]), "the default detector should load from assets/precomputed"
    for key in ("label", "score", "threshold", "flagged", "recovered_label", "rho", "directions", "sign", "m"):
        assert key in out  # the old fields stay
    assert not (tmp_path / "c").exists()  # nothing computed


def _user_model(tmp_path, name="mine"):
    card = zoo_card("digits_mlp")
    shutil.copy(ROOT / "assets" / "models" / "digits_mlp.safetensors", tmp_path / f"{name}.safetensors")
    (tmp_path / f"{name}.json").write_text(json.dumps({k: card[k] for k in card if k in (
        "architecture", "arch_kwargs", "input_shape", "pixel_range", "class_names", "mean", "std", "dataset")}))
    return str(tmp_path / f"{name}.safetensors")


def test_detect_json_user_model_uses_the_fallback(capsys, tmp_path):
    path = _user_model(tmp_path)
    common = ["--model", path, "--image", "gallery:2:0", *SMALL, "--cache-dir", str(tmp_path / "c"), "--json"]
    assert main(["detect", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["variant"] == FALLBACK.to_dict()
    assert out["variant_choice"]["source"] == "fallback" and out["variant_choice"]["file"] is None
    assert main(["detect", *common, "--variant", "paper"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["variant"] == PAPER_DEFINITION.to_dict() and out["variant_choice"]["is_paper_definition"]
    assert main(["detect", *common, "--variant", "projected/most/max"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["variant"] == {"construction": "projected", "select": "most", "score": "max"}


@pytest.mark.parametrize("args, message", [
    (["--variant", "projected/most"], "construction/select/score"),
    (["--variant", "projected/sideways/max"], "unknown selection 'sideways'"),
    (["--variant", "paper", "--select", "negative"], "--variant and --select both choose the detector"),
])
def test_detect_bad_variant_one_line(args, message, capsys):
    assert main(["detect", "--model", "digits_mlp", "--image", "gallery:2:0", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and message in err, err


def test_parse_variant():
    assert parse_variant("paper/both-ends/max") == type(FALLBACK)("paper", "both-ends", "max")
    with pytest.raises(GeometryError, match="unknown score"):
        parse_variant("paper/most/min")


def test_a_record_for_other_weights_or_damaged_is_not_used(tmp_path, monkeypatch, caplog):
    clf = zoo("digits_mlp")
    monkeypatch.setenv(pre.ENV, str(tmp_path))
    prereg = {"model": "digits_mlp", "chosen": {"construction": "paper", "select": "positive", "score": "max"}}
    write_variant_record(tmp_path / "digits_mlp", variant_record("digits_mlp", model_fingerprint(clf), prereg, "x"))
    assert recorded_variant(clf)[0].key == "paper/positive/max"
    assert resolve_variant(clf).source == "preregistered"
    write_variant_record(tmp_path / "digits_mlp", variant_record("digits_mlp", "0123456789ab", prereg, "x"))
    assert recorded_variant(clf) is None and resolve_variant(clf).variant == FALLBACK
    assert "other weights" in caplog.text
    (tmp_path / "digits_mlp" / VARIANT_FILE).write_text("{not json")
    assert recorded_variant(clf) is None and resolve_variant(clf).source == "fallback"
    with pytest.raises(GeometryError, match="not a pre-registered evaluation"):
        variant_record("digits_mlp", "x", {"model": "other"}, "x")
    with pytest.raises(GeometryError, match="chosen variant is not valid"):
        variant_record("digits_mlp", "x", {"model": "digits_mlp", "chosen": {"construction": "x"}}, "x")
