"""The CLI's error contract on hostile and careless input: exactly one stderr line starting with
``error:``, exit status 2, no traceback, and argument values checked before the model is loaded."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from hostile import build_corpus, payload_ran
from torch import nn

from geometry import cli
from geometry.errors import GeometryError
from geometry.zoo import zoo_card, zoo_weights_path


def _lenet_copy(folder: Path, name: str, **sidecar) -> Path:
    """The bundled LeNet weights with a sidecar built from its card, overridden by ``sidecar``."""
    card = zoo_card("mnist_lenet_relu")
    path = folder / f"{name}.safetensors"
    shutil.copyfile(zoo_weights_path("mnist_lenet_relu"), path)
    facts = {k: card[k] for k in ("architecture", "arch_kwargs", "input_shape", "pixel_range", "class_names")}
    facts.update(sidecar)
    (folder / f"{name}.json").write_text(json.dumps(facts))
    return path


def _cases(folder: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (CLI arguments, a phrase the one error line must contain)."""
    files = build_corpus(folder)
    mean_x = _lenet_copy(folder, "mean_x", mean=["x"], std=[0.3])
    kwargs = _lenet_copy(folder, "bad_kwargs", arch_kwargs={"activation": "relu", "widht": 3})
    wide = _lenet_copy(folder, "wide", arch_kwargs={"activation": "relu", "width": 3_000_000})
    frac = _lenet_copy(folder, "frac", input_shape=[1.5, 28, 28])
    existing = folder / "existing_file.txt"
    existing.write_text("not a folder")
    bad_program = folder / "bad_program.pt2"
    import zipfile

    with zipfile.ZipFile(bad_program, "w") as z:  # passes the member checks; torch.export.load logs a traceback
        for rel, data in [("archive_format", "pt2"), ("archive_version", "0"), (".data/version", "2"),
                          ("byteorder", "little"), ("models/model.json", json.dumps({"graph_module": {}})),
                          ("data/weights/model_weights_config.json", json.dumps({"config": {}})),
                          ("data/constants/model_constants_config.json", json.dumps({"config": {}}))]:
            z.writestr(f"bad_program/{rel}", data)
    m = lambda p: ["--model", str(p)]  # noqa: E731
    cases = {
        "pickle_payload": (["predict", *m(files["pickle_payload.pt"]), "--architecture", "mlp", "--input-shape",
                            "1,8,8"], "never loaded"),
        "native_pt2": (["predict", *m(files["native.pt2"]), "--input-shape", "1,8,8"], "native library"),
        "huge_sidecar": (["predict", *m(files["huge_sidecar.safetensors"])], "input-element limit is 786,432"),
        "vit_bomb": (["predict", *m(files["vit_bomb.safetensors"])], "parameter limit is 100,000,000"),
        "declared_huge": (["predict", *m(files["declared_huge.pt2"]), "--input-shape", "1,8,8"],
                          "only 0 elements are stored"),
        "batch_one": (["predict", *m(files["batch_one.pt"])], "batch dimension must follow the input"),
        "complex_npy": (["predict", "--model", "mnist_lenet_relu", "--image", str(files["complex.npy"])],
                        "complex numbers"),
        "sidecar_mean_x": (["predict", *m(mean_x)], "sidecar mean_x.json: mean must be a number or a list"),
        "unknown_arch_kwargs": (["predict", *m(kwargs)], "arch_kwargs key 'widht' is not a parameter"),
        "width_3000000": (["predict", *m(wide)], "parameter limit"),
        "fractional_shape": (["predict", *m(frac)], "input_shape [1.5, 28, 28] is not a list of whole numbers"),
        "device_bogus": (["predict", "--device", "bogus"], "device 'bogus' is not a device"),
        "save_missing_folder": (["deepfool", "--save", str(folder / "missing" / "x.npz")], "does not exist"),
        "vulnerability_eps": (["vulnerability", "--eps", "a,b"], "--eps must be comma-separated numbers"),
        "reproduce_out_file": (["reproduce", "--out", str(existing)], "is an existing file, not a folder"),
        "torch_logged_traceback": (["predict", *m(bad_program), "--input-shape", "1,8,8"],
                                   "not a loadable torch.export program"),
        "argparse_type": (["predict", "--top", "x"], "invalid int value"),
        "input_limit_option": (["predict", "--max-input-elements", "0"], "--max-input-elements must be a positive"),
    }
    for sub in ("predict", "deepfool", "section", "curvature"):
        cases[f"int_logits_{sub}"] = ([sub, *m(files["int_logits.pt"]), "--image", "gallery:3:0"],
                                      "returns int64 logits")
    if Path("/etc/passwd").is_file():
        cases["reproduce_out_etc_passwd"] = (["reproduce", "--out", "/etc/passwd"], "existing file, not a folder")
    return cases


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "geometry", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    return proc, time.perf_counter() - t


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Every hostile case run once as a real subprocess (two at a time)."""
    folder = tmp_path_factory.mktemp("cli_hostile")
    cases = _cases(folder)
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = dict(zip(cases, pool.map(_run, [args for args, _ in cases.values()])))
    yield {name: (cases[name][1], *runs[name]) for name in cases}
    assert payload_ran(folder) == []


CASE_NAMES = ["pickle_payload", "native_pt2", "huge_sidecar", "vit_bomb", "declared_huge", "batch_one", "complex_npy",
              "sidecar_mean_x", "unknown_arch_kwargs", "width_3000000", "fractional_shape", "device_bogus",
              "save_missing_folder", "vulnerability_eps", "reproduce_out_file", "torch_logged_traceback",
              "argparse_type", "input_limit_option", "int_logits_predict", "int_logits_deepfool",
              "int_logits_section", "int_logits_curvature"]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_hostile_case_ends_in_one_error_line(results, name):
    needle, proc, _seconds = results[name]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert needle in lines[0], lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_etc_passwd_is_refused_as_out(results):
    if "reproduce_out_etc_passwd" not in results:
        pytest.skip("no /etc/passwd here")
    needle, proc, _ = results["reproduce_out_etc_passwd"]
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and needle in proc.stderr


@pytest.mark.parametrize("name", ["vulnerability_eps", "reproduce_out_file", "device_bogus", "save_missing_folder"])
def test_argument_values_are_checked_before_the_model_loads(results, name, monkeypatch):
    """These were reported only after minutes of work; now they fail as fast as the interpreter starts."""
    _needle, proc, seconds = results[name]
    assert proc.returncode == 2
    assert seconds < 60, f"{name} took {seconds:.0f} s: checked too late"
    # and in-process: the model loader is never called
    called = []
    monkeypatch.setattr("geometry.commands._common.load_classifier", lambda *a, **k: called.append(a))
    args = {"vulnerability_eps": ["vulnerability", "--eps", "a,b"],
            "reproduce_out_file": ["reproduce", "--out", str(ROOT / "README.md")],
            "device_bogus": ["predict", "--device", "bogus"],
            "save_missing_folder": ["deepfool", "--save", "/no/such/folder/x.npz"]}[name]
    assert cli.main(args) == 2 and called == []


# ------------------------------------------------------------------ in-process: the contract's mechanics
class _AnyShape(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :2] * 1.0


def test_max_input_elements_option_raises_the_limit(tmp_path, capsys):
    path = tmp_path / "any.pt"
    torch.jit.save(torch.jit.script(_AnyShape()), str(path))
    args = ["predict", "--model", str(path), "--input-shape", "3,600,600", "--image", "gallery:3:0", "--json",
            "--device", "cpu"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: input shape [3, 600, 600] has 1,080,000 elements; the input-element limit is "
                          "786,432 elements") and err.count("\n") == 1
    assert cli.main(args + ["--max-input-elements", "1080000"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] in (0, 1)


def test_unexpected_exceptions_are_one_line(monkeypatch, capsys):
    def boom(args):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr("geometry.commands.predict.run", boom)
    assert cli.main(["predict"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unexpected RuntimeError: something broke") and err.count("\n") == 1

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr("geometry.commands.predict.run", interrupted)
    assert cli.main(["predict"]) == 130


def test_torch_warnings_and_logs_stay_off_the_terminal(monkeypatch, capsys):
    torch_logger = logging.getLogger("torch.export")
    before = (logging.getLogger("torch").level, torch_logger.level)

    def noisy(args):
        warnings.warn("`torch.jit.load` is deprecated", FutureWarning)
        torch_logger.warning("Ran into the following error when deserializing")
        raise GeometryError("the real problem")

    monkeypatch.setattr("geometry.commands.predict.run", noisy)
    assert cli.main(["predict"]) == 2
    assert capsys.readouterr().err == "error: the real problem\n"
    # the logging state is restored after the command
    assert (logging.getLogger("torch").level, torch_logger.level) == before
    with pytest.warns(FutureWarning, match="deprecated"):  # asked for: the warning is shown, not swallowed
        assert cli.main(["predict", "--verbose"]) == 2
    err = capsys.readouterr().err
    assert "Ran into the following error" in err and err.rstrip().endswith("error: the real problem")


def test_multi_line_messages_are_joined(monkeypatch, capsys):
    def multi(args):
        raise GeometryError("first\nsecond")

    monkeypatch.setattr("geometry.commands.predict.run", multi)
    assert cli.main(["predict"]) == 2
    assert capsys.readouterr().err == "error: first second\n"


def test_save_and_out_checks(tmp_path):
    from geometry.commands._common import check_out_folder, check_save_path

    check_save_path(str(tmp_path / "ok.npz"))
    with pytest.raises(GeometryError, match="must name a .npz file"):
        check_save_path(str(tmp_path / "x.txt"))
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(GeometryError, match="not a regular file"):
        check_save_path(str(tmp_path / "dir.npz"))
    check_out_folder(str(tmp_path / "new" / "deeper"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(GeometryError, match="is a file, not a folder"):
        check_out_folder(str(tmp_path / "f" / "sub"))
