"""Results shipped with the bundled models (assets/precomputed) and saved results in the user cache.

- The committed files match the bundled models as they are now (fingerprint, settings, images, code
  version, checksums), and the library functions the app and CLI call load every one of them
  without computing anything.
- A stale entry (other weights, other settings, other images, another code version) and an
  altered or damaged one are passed over with a logged reason, never a crash, and the result is
  computed again; ``cache=False`` and ``recompute=True`` always compute.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, zoo

import geometry.detection as detection
import geometry.subspace as subspace
import geometry.vulnerability as vulnerability
from geometry import precomputed as pre
from geometry.detection import detector_key, model_detector
from geometry.detector_variant import resolve_variant, variant_detector
from geometry.subspace import model_fingerprint, model_subspace, subspace_settings
from geometry.tasks import held_out_detector_evaluation, held_out_vulnerability
from geometry.zoo import zoo_names

SHIPPED = ROOT / "assets" / "precomputed"
FIX = "run `make precompute` and commit assets/precomputed"


def _forbid(monkeypatch):
    """Any real computation of S, a calibration, the experiments or the evaluation fails the test."""
    def boom(*a, **k):
        raise AssertionError("computed instead of loading the shipped result")

    monkeypatch.setattr(subspace, "curved_subspace", boom)
    monkeypatch.setattr(detection, "calibrate_detector", boom)
    monkeypatch.setattr(vulnerability, "vulnerability", boom)
    monkeypatch.setattr(detection, "evaluate_detector", boom)


@pytest.fixture()
def shipped_only(monkeypatch, tmp_path):
    monkeypatch.delenv(pre.ENV, raising=False)
    return tmp_path / "empty-user-cache"


@pytest.mark.parametrize("name", zoo_names())
def test_shipped_files_match_the_bundled_model(name, shipped_only, monkeypatch, caplog):
    folder = SHIPPED / name
    assert folder.is_dir(), f"{folder} is missing: {FIX}"
    clf = zoo(name)
    fp = model_fingerprint(clf)
    for kind in pre.KINDS:
        js = folder / f"{kind}.json"
        assert js.exists(), f"{js} is missing: {FIX}"
        rec = json.loads(js.read_text())
        assert rec["version"] == pre.CODE_VERSION, f"{js} was written by code version {rec['version']}: {FIX}"
        assert rec["fingerprint"] == fp, f"{js} is for other weights of {name} ({rec['fingerprint']} != {fp}): {FIX}"
    D = pre.PAGE_DEFAULTS
    caplog.set_level(logging.INFO, logger="geometry.precomputed")
    _forbid(monkeypatch)
    cache = shipped_only
    S = model_subspace(clf, images=D["images"], m=D["m"], estimator=D["estimator"], cache=cache)
    assert pre.is_shipped(S.path), f"the shipped S of {name} was not used ({caplog.text}): {FIX}"
    assert S.m == D["m"] and S.dim == clf.dim and S.fingerprint == fp
    assert np.allclose(S.basis.T @ S.basis, np.eye(S.m), atol=1e-5)  # float32-stored, still orthonormal
    # the page's default detector: the pre-registered variant (its S may be of another construction)
    choice = resolve_variant(clf, D["detector"])
    S_det, det = variant_detector(clf, D["detector"], images=D["images"], m=D["m"], estimator=D["estimator"],
                                  fpr=D["fpr"], calibration_images=D["calibration_images"], cache=cache,
                                  with_subspace=True)
    assert pre.is_shipped(S_det.path), f"the shipped S of {name}'s detector was not used ({caplog.text}): {FIX}"
    assert pre.is_shipped(det.path), f"the shipped detector of {name} was not used ({caplog.text}): {FIX}"
    assert det.variant == choice.variant.to_dict() and det.score == choice.variant.score
    assert det.basis.shape == S_det.basis.shape
    assert torch.allclose(det.basis, S_det.basis.to(det.basis.dtype), atol=1e-6)
    assert len(det.calibration_scores) == D["calibration_images"]
    vul = held_out_vulnerability(clf, S, D["experiment_images"], D["draws"], cache=cache)
    assert vul.concentration.m == S.m and vul.fooling.draws == D["draws"]
    assert len(vul.fooling.eps) == len(vul.fooling.subspace) > 2
    ev = held_out_detector_evaluation(clf, det, D["calibration_images"], D["evaluation_images"], D["sizes"],
                                      cache=cache)
    assert len(ev.rows) == 3 * len(D["sizes"]) and ev.detector is det
    assert not cache.exists()  # nothing was computed, so nothing was saved
    assert "ignoring" not in caplog.text, caplog.text


def test_shipped_files_are_small():
    total = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert total < 2 * 2**20, f"assets/precomputed holds {total / 2**20:.2f} MiB"
    assert {p.suffix for p in SHIPPED.rglob("*") if p.is_file()} <= {".json", ".npz"}
    for npz in SHIPPED.rglob("*.npz"):
        with np.load(npz, allow_pickle=False) as f:  # no object arrays: nothing needs unpickling
            for k in f.files:
                assert f[k].dtype != object


# ------------------------------------------------------------------ stale / damaged entries (small settings)
SMALL = {"images": 12, "m": 4}


@pytest.fixture()
def shipped_small(tmp_path, monkeypatch):
    """A shipped folder holding S for digits_mlp at small settings, and a counter of real computations."""
    root = tmp_path / "shipped"
    monkeypatch.setenv(pre.ENV, str(root))
    clf = zoo("digits_mlp")
    calls = {"S": 0, "vul": 0, "eval": 0, "cal": 0}
    real_s, real_v, real_e, real_c = (subspace.curved_subspace, vulnerability.vulnerability,
                                      detection.evaluate_detector, detection.calibrate_detector)

    def count(name, fn):
        def wrapped(*a, **k):
            calls[name] += 1
            return fn(*a, **k)
        return wrapped

    monkeypatch.setattr(subspace, "curved_subspace", count("S", real_s))
    monkeypatch.setattr(vulnerability, "vulnerability", count("vul", real_v))
    monkeypatch.setattr(detection, "evaluate_detector", count("eval", real_e))
    monkeypatch.setattr(detection, "calibrate_detector", count("cal", real_c))
    settings = subspace_settings(clf, **SMALL)
    S0 = model_subspace(clf, **SMALL, cache=False)
    meta, arrays = pre.encode_subspace(S0)

    def write(**over):
        args = dict(kind="subspace", fingerprint=model_fingerprint(clf), key=pre.subspace_key(settings),
                    data=pre.subspace_images_digest(clf, settings), meta=meta, arrays=arrays)
        args.update(over)
        return pre.write_entry(root / "digits_mlp", "subspace", **args)

    write()
    return clf, calls, write, root / "digits_mlp", tmp_path / "user-cache"


def test_a_matching_entry_is_used_and_no_cache_recomputes(shipped_small):
    clf, calls, write, folder, cache = shipped_small
    assert calls["S"] == 1
    S = model_subspace(clf, **SMALL, cache=cache)
    assert calls["S"] == 1 and S.path == str(folder / "subspace.npz") and pre.is_shipped(S.path)
    model_subspace(clf, **SMALL, cache=False)  # --no-cache
    assert calls["S"] == 2
    model_subspace(clf, **SMALL, cache=cache, recompute=True)  # --recompute
    assert calls["S"] == 3
    model_subspace(clf, images=12, m=3, cache=cache)  # other settings
    assert calls["S"] == 4


@pytest.mark.parametrize("change,reason", [
    ({"fingerprint": "0123456789ab"}, "other weights"),
    ({"data": "not-these-images"}, "other images"),
    ({"key": {"settings": {"m": 4}}}, "other settings"),
])
def test_stale_entries_are_recomputed(shipped_small, caplog, change, reason):
    clf, calls, write, folder, cache = shipped_small
    write(**change)
    caplog.set_level(logging.INFO, logger="geometry.precomputed")
    S = model_subspace(clf, **SMALL, cache=cache)
    assert calls["S"] == 2 and not pre.is_shipped(S.path)
    assert reason in caplog.text


def _edit_record(folder: Path, **fields):
    js = folder / "subspace.json"
    rec = json.loads(js.read_text())
    rec.update(fields)
    js.write_text(json.dumps(rec))


def test_another_code_version_is_recomputed(shipped_small, caplog):
    clf, calls, write, folder, cache = shipped_small
    _edit_record(folder, version="0.0.0")
    S = model_subspace(clf, **SMALL, cache=cache)
    assert calls["S"] == 2 and not pre.is_shipped(S.path)
    assert "written by code version '0.0.0'" in caplog.text and "make precompute" in caplog.text


def test_altered_or_damaged_files_are_ignored_with_a_reason(shipped_small, caplog):
    clf, calls, write, folder, cache = shipped_small
    npz = folder / "subspace.npz"
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))  # altered arrays: the checksum no longer matches
    S = model_subspace(clf, **SMALL, cache=cache / "a")
    assert calls["S"] == 2 and "altered or damaged" in caplog.text and not pre.is_shipped(S.path)
    (folder / "subspace.json").write_text("{ not json")
    S = model_subspace(clf, **SMALL, cache=cache / "b")
    assert calls["S"] == 3 and "not a readable record" in caplog.text
    write()
    npz.unlink()
    S = model_subspace(clf, **SMALL, cache=cache / "c")
    assert calls["S"] == 4 and "cannot be read" in caplog.text


def test_entries_whose_contents_do_not_fit_are_ignored(shipped_small, caplog):
    clf, calls, write, folder, cache = shipped_small
    meta, arrays = pre.encode_subspace(model_subspace(clf, **SMALL, cache=cache))
    assert calls["S"] == 1
    write(arrays=dict(arrays, basis=arrays["basis"][:, :2]))  # checksum fine, shape wrong
    S = model_subspace(clf, **SMALL, cache=cache / "a")
    assert calls["S"] == 2 and "contents do not fit" in caplog.text and S.m == 4
    write(arrays=dict(arrays, basis=np.full_like(arrays["basis"], np.nan)))
    model_subspace(clf, **SMALL, cache=cache / "b")
    assert calls["S"] == 3 and "non-finite" in caplog.text
    # an array file that would need unpickling is refused by np.load(allow_pickle=False)
    write(arrays=dict(arrays, labels=np.array([{"x": 1}], dtype=object)))
    model_subspace(clf, **SMALL, cache=cache / "c")
    assert calls["S"] == 4 and "not a readable array file" in caplog.text


def test_shipped_results_are_off_on_request(shipped_small, monkeypatch):
    clf, calls, write, folder, cache = shipped_small
    monkeypatch.setenv(pre.ENV, "off")
    assert pre.precomputed_dir() is None
    model_subspace(clf, **SMALL, cache=cache)
    assert calls["S"] == 2


def test_experiments_and_evaluation_are_saved_and_reused(shipped_small, caplog):
    clf, calls, write, folder, cache = shipped_small
    S = model_subspace(clf, **SMALL, cache=cache)
    v1 = held_out_vulnerability(clf, S, 20, 2, cache=cache)
    v2 = held_out_vulnerability(clf, S, 20, 2, cache=cache)
    assert calls["vul"] == 1
    assert np.array_equal(v1.concentration.ratios, v2.concentration.ratios)
    assert v1.fooling.summary() == v2.fooling.summary() and v2.subspace["model"] == "digits_mlp"
    held_out_vulnerability(clf, S, 20, 2, cache=False)
    assert calls["vul"] == 2
    held_out_vulnerability(clf, S, 20, 3, cache=cache)  # other draws
    assert calls["vul"] == 3
    other = S.with_signs("positive")  # other directions: never the saved curves
    held_out_vulnerability(clf, other, 20, 2, cache=cache)
    assert calls["vul"] == 4

    det = model_detector(clf, S, images=30, cache=cache)
    e1 = held_out_detector_evaluation(clf, det, 30, 20, (1.0,), cache=cache)
    e2 = held_out_detector_evaluation(clf, det, 30, 20, (1.0,), cache=cache)
    assert calls["eval"] == 1
    assert e1.to_dict(curves=True) == e2.to_dict(curves=True)
    det2 = model_detector(clf, S, images=30, fpr=0.2, cache=cache)  # another threshold: another evaluation
    held_out_detector_evaluation(clf, det2, 30, 20, (1.0,), cache=cache)
    assert calls["eval"] == 2
    # a damaged saved result is ignored (logged) and replaced
    for npz in (cache / "evaluation").glob("*.npz"):
        npz.write_bytes(b"garbage")
    held_out_detector_evaluation(clf, det, 30, 20, (1.0,), cache=cache)
    assert calls["eval"] == 3 and "altered or damaged" in caplog.text
    held_out_detector_evaluation(clf, det, 30, 20, (1.0,), cache=cache)
    assert calls["eval"] == 3


def test_detector_entry_follows_S(shipped_small, caplog):
    clf, calls, write, folder, cache = shipped_small
    S = model_subspace(clf, **SMALL, cache=cache)
    key = detector_key(S, images=30)
    det = model_detector(clf, S, images=30, cache=False)
    assert calls["cal"] == 1
    meta, arrays = pre.encode_detector(det)
    pre.write_entry(folder, "detector", kind="detector", fingerprint=model_fingerprint(clf),
                    key=pre.detector_key(S, key), data=pre.detector_images_digest(clf, 30, 0), meta=meta,
                    arrays=arrays)
    got = model_detector(clf, S, images=30, cache=cache)
    assert calls["cal"] == 1 and pre.is_shipped(got.path)
    assert got.threshold == det.threshold and got.sign == det.sign
    assert np.array_equal(got.calibration_scores, det.calibration_scores)
    assert torch.equal(got.basis, det.basis)  # detector directions are float32 values: stored exactly
    # the same settings on another S (other directions) never reuse it
    S2 = model_subspace(clf, **SMALL, cache=cache, recompute=True)
    S2.basis = torch.linalg.qr(S2.basis + 1e-3)[0]
    model_detector(clf, S2, images=30, cache=cache)
    assert calls["cal"] == 2


def test_an_edited_scalar_in_the_record_is_noticed(shipped_small, caplog):
    """The JSON's own numbers (not only the arrays) are covered by a digest: a hand-edited result is not used."""
    clf, calls, write, folder, cache = shipped_small
    rec = json.loads((folder / "subspace.json").read_text())
    rec["meta"]["num_points"] = 999
    (folder / "subspace.json").write_text(json.dumps(rec))
    S = model_subspace(clf, **SMALL, cache=cache)
    assert calls["S"] == 2 and not pre.is_shipped(S.path) and "record was altered" in caplog.text


def test_rates_outside_0_1_are_refused():
    with pytest.raises(ValueError, match="outside"):
        pre._rates(np.array([0.2, 1.7]))
    with pytest.raises(ValueError, match="not finite"):
        pre._finite({"x": np.array([1.0, np.nan])}, ("x",))
    pre._rates(np.array([0.0, 1.0]), 0.5)
