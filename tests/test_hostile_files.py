"""Hostile and careless model/image files are refused before anything runs or is allocated.

Each test reproduces one way a file could run code, exhaust memory or slip past the checks,
and asserts the loader's one-line refusal (and that no payload marker appeared).
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from hostile import _native_pt2, _pickle_payload, build_corpus, payload_ran
from PIL import Image
from safetensors.torch import save_file
from torch import nn

from geometry import GeometryError, ImageError, ModelLoadError, load_classifier, load_image
from geometry import limits
from geometry.archive import inspect_archive, inspect_safetensors
from geometry.zoo import architecture_parameters, zoo_card, zoo_weights_path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    t = time.perf_counter()
    files = build_corpus(folder)
    # about 4 s here; the bound leaves room for a busy shared machine
    assert time.perf_counter() - t < 20, "building the corpus must stay fast"
    yield folder, files
    assert payload_ran(folder) == [], f"a payload ran: {payload_ran(folder)}"


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rezip(src: Path, dst: Path, replace: dict[str, bytes] | None = None, add: dict[str, bytes] | None = None,
           drop: tuple[str, ...] = ()) -> Path:
    """Copy a zip, replacing/adding/dropping members (names relative to its top folder)."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        root = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            rel = info.filename.split("/", 1)[1]
            if rel in drop:
                continue
            zout.writestr(info, replace.get(rel, zin.read(info)))
        for rel, data in add.items():
            zout.writestr(f"{root}/{rel}", data)
    return dst


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 3)).eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, small_net):
    """The three zip layouts torch writes, for an 8x8 one-channel model."""
    folder = tmp_path_factory.mktemp("formats")
    x = torch.zeros(2, 1, 8, 8)
    ts, ep, sd = folder / "ts.pt", folder / "ep.pt2", folder / "sd.pt"
    torch.jit.save(torch.jit.trace(small_net, x), str(ts), _extra_files={"producer.txt": "tests"})
    torch.export.save(torch.export.export(small_net, (x,)), str(ep))
    torch.save(small_net.state_dict(), str(sd))
    return {"ts": ts, "ep": ep, "sd": sd, "folder": folder}


# ------------------------------------------------------------------ nothing from a file runs as code
def test_pickle_payload_is_refused_before_torch(corpus):
    folder, files = corpus
    with pytest.raises(ModelLoadError, match=r"io\.open.*never loaded"):
        load_classifier(files["pickle_payload.pt"], architecture="mlp", input_shape="1,8,8", device="cpu")
    assert payload_ran(folder) == []


def test_pickle_payload_is_real(tmp_path):
    """The corpus file does what it says when unpickled without restriction (in a throw-away folder)."""
    torch.load(_pickle_payload(tmp_path), weights_only=False)
    assert payload_ran(tmp_path) == ["PWNED_pickle"]


def test_native_library_in_pt2_is_refused_and_never_runs(corpus):
    folder, files = corpus
    with pytest.raises(ModelLoadError, match=r"member 'data/aotinductor/model/model\.wrapper\.so' is a native "
                                             r"library"):
        load_classifier(files["native.pt2"], input_shape="1,8,8", device="cpu")
    assert payload_ran(folder) == []


def test_native_payload_runs_under_plain_torch_export_load(tmp_path):
    """Reproduction: torch.export.load dlopens the AOTInductor library, so its constructor runs at load time."""
    path, real = _native_pt2(tmp_path)
    if not real:
        pytest.skip("no C compiler (cc): native.pt2 holds a dummy library")
    code = "import sys, torch\ntry:\n    torch.export.load(sys.argv[1])\nexcept Exception:\n    pass\n"
    subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, timeout=300)
    assert payload_ran(tmp_path) == ["PWNED_native"]


@pytest.mark.parametrize("member, why", [
    ("data/aotinductor/model/model.wrapper.cpp", "native library or source"),
    ("data/aotinductor/model/kernel.h", "native library or source"),
    ("data/aotinductor/model/model.wrapper_metadata.json", "AOTInductor"),
    ("extra/helper.dylib", "native library or source"),
    ("data/constants/custom_obj_0", "pickled Python/script object"),
    ("data/constants/opaque_obj_0", "pickled Python/script object"),
    ("data/unexpected.bin", "not part of a torch.export"),
])
def test_pt2_members_outside_the_allowlist_are_refused(saved, tmp_path, member, why):
    bad = _rezip(saved["ep"], tmp_path / "bad.pt2", add={member: b"\0" * 16})
    with pytest.raises(ModelLoadError, match=why) as err:
        load_classifier(bad, input_shape="1,8,8", device="cpu")
    assert repr(member) in str(err.value)


@pytest.mark.parametrize("member, why", [
    ("code/__torch__/helper.so", "native library"),
    ("libpayload.dll", "native library"),
    ("bytecode.pkl", "mobile bytecode"),
    ("data/notes.txt", "not part of a TorchScript"),
    ("payload.pkl", "not part of a TorchScript"),
])
def test_torchscript_members_outside_the_allowlist_are_refused(saved, tmp_path, member, why):
    bad = _rezip(saved["ts"], tmp_path / "bad.pt", add={member: b"\0" * 16})
    with pytest.raises(ModelLoadError, match=why):
        load_classifier(bad, input_shape="1,8,8", device="cpu")


def test_the_layouts_torch_writes_are_accepted(saved, small_net):
    assert inspect_archive(saved["ts"]).kind == "torchscript"
    assert inspect_archive(saved["ep"]).kind == "export"
    assert inspect_archive(saved["sd"]).kind == "state_dict"
    n = sum(p.numel() for p in small_net.parameters())
    assert inspect_archive(saved["sd"]).stored_elements == n
    assert inspect_archive(saved["ep"]).stored_elements >= n
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for key in ("ts", "ep"):
        clf = load_classifier(saved[key], input_shape="1,8,8", device="cpu")
        torch.testing.assert_close(clf.logits(x), small_net(x))


def test_ambiguous_zip_structures_are_refused(saved, tmp_path):
    with zipfile.ZipFile(saved["sd"]) as z:
        members = [(i, z.read(i)) for i in z.infolist()]
    two_roots = tmp_path / "two.pt"
    with zipfile.ZipFile(two_roots, "w") as z:
        for info, data in members:
            z.writestr(info, data)
        z.writestr("other/data.pkl", b"")
    with pytest.raises(ModelLoadError, match="2 top folders"):
        load_classifier(two_roots, architecture="mlp", input_shape="1,8,8", device="cpu")
    dup = tmp_path / "dup.pt"
    with zipfile.ZipFile(dup, "w") as z:
        for info, data in members:
            z.writestr(info, data)
        with pytest.warns(UserWarning, match="Duplicate name"):
            z.writestr(members[0][0].filename, members[0][1])
    with pytest.raises(ModelLoadError, match="appears twice"):
        load_classifier(dup, architecture="mlp", input_shape="1,8,8", device="cpu")
    traversal = _rezip(saved["sd"], tmp_path / "trav.pt", add={"../escape": b"x"})
    with pytest.raises(ModelLoadError, match="unsafe or unexpected path"):
        load_classifier(traversal, architecture="mlp", input_shape="1,8,8", device="cpu")


# ------------------------------------------------------------------ declared sizes vs bytes present
def test_pt2_declaring_a_huge_tensor_is_refused_without_allocating(corpus):
    _, files = corpus
    assert files["declared_huge.pt2"].stat().st_size < 10_000
    before = _max_rss_mb()
    with pytest.raises(ModelLoadError, match=r"declares shape \[100000, 10000\].*only 0 elements are stored"):
        load_classifier(files["declared_huge.pt2"], input_shape="1,8,8", device="cpu")
    assert _max_rss_mb() - before < 200, "the declared 4 GB tensor was allocated"


def test_pt2_weight_reaching_past_its_record_is_refused(saved, tmp_path):
    with zipfile.ZipFile(saved["ep"]) as z:
        root = z.namelist()[0].split("/")[0]
        cfg = json.loads(z.read(f"{root}/data/weights/model_weights_config.json"))
    first = next(iter(cfg["config"].values()))
    first["tensor_meta"]["sizes"] = [{"as_int": 16}, {"as_int": 10_000}]
    first["tensor_meta"]["strides"] = [{"as_int": 10_000}, {"as_int": 1}]
    bad = _rezip(saved["ep"], tmp_path / "lie.pt2",
                 replace={"data/weights/model_weights_config.json": json.dumps(cfg).encode()})
    with pytest.raises(ModelLoadError, match=r"declares shape \[16, 10000\]"):
        load_classifier(bad, input_shape="1,8,8", device="cpu")
    first["use_pickle"] = True
    pickled = _rezip(saved["ep"], tmp_path / "pickled.pt2",
                     replace={"data/weights/model_weights_config.json": json.dumps(cfg).encode()})
    with pytest.raises(ModelLoadError, match="stored pickled.*never loaded"):
        load_classifier(pickled, input_shape="1,8,8", device="cpu")


def _patch_first_storage_numel(pkl: bytes, numel: int) -> bytes:
    """Rewrite the element count of the first storage in a torch pickle (BININT1/BININT2 after 'cpu')."""
    i = pkl.index(b"cpu") + 3
    while pkl[i:i + 1] not in (b"K", b"M", b"J"):
        i += 1
    width = {b"K": 1, b"M": 2, b"J": 4}[pkl[i:i + 1]]
    return pkl[:i] + b"J" + struct.pack("<i", numel) + pkl[i + 1 + width:]


def test_torch_save_storage_size_lie_is_refused(saved, tmp_path):
    with zipfile.ZipFile(saved["sd"]) as z:
        root = z.namelist()[0].split("/")[0]
        pkl = z.read(f"{root}/data.pkl")
    bad = _rezip(saved["sd"], tmp_path / "lie.pt", replace={"data.pkl": _patch_first_storage_numel(pkl, 10**9)})
    before = _max_rss_mb()
    with pytest.raises(ModelLoadError, match=r"declares storage data/0 as 1,000,000,000 elements"):
        load_classifier(bad, architecture="mlp", input_shape="1,8,8", device="cpu")
    assert _max_rss_mb() - before < 200


def test_torchscript_storage_size_lie_is_refused(saved, tmp_path):
    with zipfile.ZipFile(saved["ts"]) as z:
        root = z.namelist()[0].split("/")[0]
        pkl = z.read(f"{root}/data.pkl")
    bad = _rezip(saved["ts"], tmp_path / "lie.pt", replace={"data.pkl": _patch_first_storage_numel(pkl, 5 * 10**8)})
    with pytest.raises(ModelLoadError, match="declares storage data/"):
        load_classifier(bad, input_shape="1,8,8", device="cpu")


def _safetensors(header: dict, data: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


@pytest.mark.parametrize("header, data, why", [
    ({"w": {"dtype": "F32", "shape": [100000, 10000], "data_offsets": [0, 16]}}, bytes(16), "declares shape"),
    ({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 4_000_000_000]}}, bytes(16), "truncated"),
    ({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}, bytes(16), "malformed shape"),
    ({"w": {"dtype": "PICKLE", "shape": [4], "data_offsets": [0, 16]}}, bytes(16), "unsupported dtype"),
    ({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
      "b": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, bytes(16), "overlap|declares shape"),
])
def test_safetensors_header_lies_are_refused(tmp_path, header, data, why):
    path = tmp_path / "w.safetensors"
    path.write_bytes(_safetensors(header, data))
    with pytest.raises(ModelLoadError, match=why):
        load_classifier(path, architecture="mlp", input_shape="1,8,8", device="cpu")


def test_safetensors_header_length_lie_is_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    with pytest.raises(ModelLoadError, match="header claims"):
        load_classifier(path, architecture="mlp", input_shape="1,8,8", device="cpu")


def test_safetensors_header_counts_the_bundled_weights():
    from safetensors import safe_open

    path = zoo_weights_path("mnist_lenet_relu")
    info = inspect_safetensors(path)
    with safe_open(str(path), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert {k: shape for k, (_, shape) in info.tensors.items()} == shapes
    assert info.stored_elements == sum(int(np.prod(s)) for s in shapes.values()) == 117_066


# ------------------------------------------------------------------ sizes bounded before allocation
def test_huge_input_shape_from_the_sidecar_is_refused_by_the_limit(corpus):
    _, files = corpus
    with pytest.raises(ModelLoadError) as err:
        load_classifier(files["huge_sidecar.safetensors"], device="cpu")
    msg = str(err.value)
    assert "sidecar huge_sidecar.json: input_shape [3, 20000, 20000]" in msg
    assert "1,200,000,000" in msg and "786,432" in msg and "BOUNDARY_GEOMETRY_MAX_INPUT_ELEMENTS" in msg


def test_input_element_limit_is_exact_and_can_be_raised(tmp_path, monkeypatch):
    """A model that accepts any shape: the limit alone decides."""
    class AnyShape(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :2] * 1.0

    path = tmp_path / "any.pt"
    torch.jit.save(torch.jit.script(AnyShape()), str(path))
    default = limits.INPUT_ELEMENTS.default
    assert default == 3 * 512 * 512
    assert load_classifier(path, input_shape=[3, 512, 512], device="cpu").dim == default
    with pytest.raises(ModelLoadError, match=r"input shape \[3, 512, 513\] has 787,968 elements; the input-element "
                                             r"limit is 786,432"):
        load_classifier(path, input_shape=[3, 512, 513], device="cpu")
    assert load_classifier(path, input_shape=[3, 512, 513], device="cpu", max_input_elements=787_968).dim == 787_968
    monkeypatch.setenv(limits.INPUT_ELEMENTS.env, "787968")
    assert load_classifier(path, input_shape=[3, 512, 513], device="cpu").dim == 787_968
    monkeypatch.setenv(limits.INPUT_ELEMENTS.env, "lots")
    with pytest.raises(GeometryError, match="BOUNDARY_GEOMETRY_MAX_INPUT_ELEMENTS must be a positive integer"):
        load_classifier(path, input_shape=[1, 8, 8], device="cpu")


def test_zoo_models_obey_a_lowered_input_limit(monkeypatch):
    monkeypatch.setenv(limits.INPUT_ELEMENTS.env, "100")
    with pytest.raises(ModelLoadError, match=r"model card mnist_lenet_relu: input_shape \[1, 28, 28\] has 784 "
                                             r"elements; the input-element limit is 100 elements"):
        load_classifier("mnist_lenet_relu", device="cpu")
    assert load_classifier("digits_mlp", device="cpu").dim == 64


def test_vit_bomb_is_refused_fast_by_the_parameter_limit(corpus):
    _, files = corpus
    assert files["vit_bomb.safetensors"].stat().st_size <= 100
    t = time.perf_counter()
    before = _max_rss_mb()
    with pytest.raises(ModelLoadError, match=r"architecture 'vit_h_14' has 630,\d{3},\d{3} parameters; the "
                                             r"parameter limit is 100,000,000"):
        load_classifier(files["vit_bomb.safetensors"], device="cpu")
    assert time.perf_counter() - t < 30
    assert _max_rss_mb() - before < 500, "vit_h_14's 2.5 GB of weights were allocated"


def test_parameter_limit_counts_file_and_architecture(monkeypatch, tmp_path):
    monkeypatch.setenv(limits.PARAMETERS.env, "50000")
    with pytest.raises(ModelLoadError, match=r"architecture 'lenet' .*has 117,066 parameters; the parameter limit "
                                             r"is 50,000"):
        load_classifier("mnist_lenet_relu", device="cpu")
    path = tmp_path / "w.safetensors"
    path.write_bytes(zoo_weights_path("mnist_lenet_relu").read_bytes())
    with pytest.raises(ModelLoadError, match=r"w\.safetensors \(tensors stored\) has 117,066 parameters"):
        load_classifier(path, architecture="lenet", input_shape="1,28,28", device="cpu")
    assert load_classifier(path, architecture="lenet", arch_kwargs={"activation": "relu"}, input_shape="1,28,28",
                           device="cpu", max_parameters=200_000).num_classes == 10


def test_arch_kwargs_are_checked_against_the_signature(tmp_path):
    card = zoo_card("mnist_lenet_relu")
    path = tmp_path / "w.safetensors"
    path.write_bytes(zoo_weights_path("mnist_lenet_relu").read_bytes())
    base = dict(architecture="lenet", input_shape="1,28,28", device="cpu")
    with pytest.raises(ModelLoadError, match=r"arch_kwargs key 'widht' is not a parameter of architecture 'lenet'; "
                                             r"allowed: activation, pooling, in_channels, input_size, width"):
        load_classifier(path, arch_kwargs={"widht": 32}, **base)
    t = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"arch_kwargs \{'width': 3000000\} has [\d,]+ parameters; the "
                                             r"parameter limit"):
        load_classifier(path, arch_kwargs={"width": 3_000_000}, **base)
    assert time.perf_counter() - t < 10
    with pytest.raises(ModelLoadError, match="unknown pooling 'maxx'"):
        load_classifier(path, arch_kwargs={"pooling": "maxx"}, **base)
    with pytest.raises(ModelLoadError, match="must be a whole number"):
        load_classifier(path, arch_kwargs={"width": "32"}, **base)
    with pytest.raises(ModelLoadError, match="may not set num_classes"):
        load_classifier(path, arch_kwargs={"num_classes": 10}, **base)
    with pytest.raises(ModelLoadError, match="needs more than .* to build"):
        architecture_parameters("mlp", 10, {"depth": 10**7, "hidden": 1}, limits.PARAMETERS.default)
    assert card["arch_kwargs"] == {"activation": "relu", "pooling": "max"}


def test_torchvision_kwargs_and_names_are_checked():
    with pytest.raises(ModelLoadError, match=r"arch_kwargs key 'bogus' is not accepted by architecture 'resnet18'; "
                                             r"allowed: .*zero_init_residual"):
        architecture_parameters("resnet18", 10, {"bogus": 1}, limits.PARAMETERS.default)
    # detection builders would download backbone weights: only torchvision's classifiers are architectures
    with pytest.raises(ModelLoadError, match="unknown architecture 'fasterrcnn_resnet50_fpn'"):
        architecture_parameters("fasterrcnn_resnet50_fpn", 10, {}, limits.PARAMETERS.default)
    assert architecture_parameters("resnet18", 10, {}, limits.PARAMETERS.default) == 11_181_642


@pytest.mark.parametrize("sidecar, needle", [
    ({"mean": ["x"], "std": [0.3]}, "sidecar m.json: mean must be a number or a list of numbers"),
    ({"input_shape": [1.5, 28, 28]}, r"sidecar m.json: input_shape \[1.5, 28, 28\] is not a list of whole numbers"),
    ({"input_shape": [True, 28, 28]}, "is not a list of whole numbers"),
    ({"input_shape": [1, -28, 28]}, "must be positive whole numbers"),
    ({"pixel_range": [0, float("inf")]}, "must be finite"),
    ({"pixel_range": [1, 0]}, "low < high"),
    ({"class_names": [{"a": 1}, "b"]}, "class_names must be a list of names"),
    ({"std": [0.0], "mean": [0.1]}, "std must be positive"),
    ({"arch_kwargs": ["width", 3]}, "arch_kwargs must be an object"),
    ({"num_classes": 1}, "num_classes must be a whole number >= 2"),
])
def test_bad_sidecar_values_get_one_message_naming_the_field(tmp_path, sidecar, needle):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))), str(path))
    (tmp_path / "m.json").write_text(json.dumps({"input_shape": [1, 28, 28], **sidecar}))
    with pytest.raises(GeometryError, match=needle) as err:
        load_classifier(path, device="cpu")
    assert "\n" not in str(err.value)


def test_mean_must_match_the_channels(tmp_path):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(784, 10))), str(path))
    with pytest.raises(ModelLoadError, match="mean has 3 values but the input has 1 channels"):
        load_classifier(path, input_shape="1,28,28", mean=[0.5] * 3, std=[0.2] * 3, device="cpu")


def test_class_names_never_read_a_file(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("alpha\nbeta\n")
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(nn.Sequential(nn.Flatten(), nn.Linear(4, 2))), str(path))
    # a path typed where class names go (the app's text field) is one (wrong) name, not the file's content
    with pytest.raises(ModelLoadError, match="outputs 2 logits but 1 class names"):
        load_classifier(path, input_shape="1,2,2", class_names=str(secret), device="cpu")
    assert load_classifier(path, input_shape="1,2,2", class_names="alpha,beta", device="cpu").class_names == \
        ["alpha", "beta"]


# ------------------------------------------------------------------ models that are not classifiers
def test_integer_logits_are_refused_at_load(corpus):
    _, files = corpus
    with pytest.raises(ModelLoadError, match="returns int64 logits; a classifier must return floating-point"):
        load_classifier(files["int_logits.pt"], device="cpu")


def test_batch_of_one_model_is_refused_at_load(corpus):
    _, files = corpus
    with pytest.raises(ModelLoadError, match=r"returned 1 row\(s\) of logits for a batch of 2 images"):
        load_classifier(files["batch_one.pt"], device="cpu")


class OneLogit(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :1] * 1.0


class TupleOut(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :3] * 1.0, x


class InfLogits(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :3] / 0.0


class Identity4d(nn.Module):
    def forward(self, x):
        return x * 1.0


@pytest.mark.parametrize("module, needle", [
    (OneLogit, "at least 2 classes"),
    (TupleOut, "returned tuple, not a tensor"),
    (InfLogits, "NaN or infinite"),
    (Identity4d, "not a classifier"),
])
def test_probe_refuses_non_classifiers(tmp_path, module, needle):
    path = tmp_path / "m.pt"
    torch.jit.save(torch.jit.script(module()), str(path))
    with pytest.raises(ModelLoadError, match=needle):
        load_classifier(path, input_shape="1,4,4", device="cpu")


def test_static_batch_export_is_refused_with_the_reason(saved, small_net, tmp_path):
    path = tmp_path / "one.pt2"
    torch.export.save(torch.export.export(small_net, (torch.zeros(1, 1, 8, 8),)), str(path))
    with pytest.raises(ModelLoadError, match="runs on one image but fails on a batch of 2.*mark the batch dimension "
                                             "dynamic"):
        load_classifier(path, input_shape="1,8,8", device="cpu")


def test_bogus_devices_are_refused():
    for dev, needle in [("bogus", "is not a device"), ("meta", "not supported"), ("cuda:99", "cuda")]:
        with pytest.raises(GeometryError, match=needle):
            load_classifier("digits_mlp", device=dev)


# ------------------------------------------------------------------ images and arrays
def test_complex_and_object_arrays_are_refused(corpus, digits_model):
    _, files = corpus
    clf = load_classifier("mnist_lenet_relu", device="cpu")
    with pytest.raises(ImageError, match="complex numbers"):
        load_image(files["complex.npy"], clf)
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match="pickled arrays are never loaded"):
        load_image(buf.getvalue(), clf, name="obj.npy")


def test_npy_declaring_a_huge_shape_is_refused_before_numpy_allocates(digits_model):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**10,)})
    data = buf.getvalue() + bytes(64 * 8)
    before = _max_rss_mb()
    with pytest.raises(ImageError, match=r"has shape \(10000000000,\)"):
        load_image(data, digits_model, name="huge.npy")
    assert _max_rss_mb() - before < 200
    short = io.BytesIO()
    np.lib.format.write_array_header_1_0(short, {"descr": "<f8", "fortran_order": False, "shape": (8, 8)})
    with pytest.raises(ImageError, match="truncated"):
        load_image(short.getvalue() + bytes(10), digits_model, name="short.npy")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height over a few bytes of pixel data (a decompression bomb's shape)."""
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(64)))
            + chunk(b"IEND", b""))


def test_image_pixel_limit_is_checked_exactly_from_the_header(digits_model, monkeypatch):
    # 79 megapixels: below PIL's own refusal (twice its limit) but over ours
    with pytest.raises(ImageError, match=r"8,900 x 8,900 = 79,210,000 pixels; the image-pixel limit is 40,000,000"):
        load_image(_png_header_only(8900, 8900), digits_model, name="big.png")
    with pytest.raises(ImageError, match="image-pixel limit"):
        load_image(_png_header_only(40_000_001, 1), digits_model, name="wide.png")
    monkeypatch.setenv(limits.IMAGE_PIXELS.env, "100")
    img = np.zeros((10, 10), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    assert load_image(buf.getvalue(), digits_model, name="ok.png").tensor.shape == (1, 8, 8)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((10, 11), dtype=np.uint8)).save(buf, format="PNG")
    with pytest.raises(ImageError, match=r"11 x 10 = 110 pixels; the image-pixel limit is 100"):
        load_image(buf.getvalue(), digits_model, name="over.png")


def test_only_png_and_jpeg_decoders_are_used(digits_model):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(buf, format="TIFF")
    with pytest.raises(ImageError, match="not a readable PNG or JPEG"):
        load_image(buf.getvalue(), digits_model, name="x.tif")


def test_corpus_leaves_no_marker_behind(corpus):
    folder, files = corpus
    assert set(files) >= {"pickle_payload.pt", "native.pt2", "huge_sidecar.safetensors", "huge_sidecar.json",
                          "vit_bomb.safetensors", "slow.pt", "int_logits.pt", "batch_one.pt", "complex.npy",
                          "declared_huge.pt2"}
    assert all(p.exists() for p in files.values())
    assert payload_ran(folder) == []
    assert os.environ.get(limits.INPUT_ELEMENTS.env) is None
