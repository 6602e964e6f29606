"""Every model format loads into the same Classifier, and bad files get clear errors."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from conftest import zoo
from safetensors.torch import save_file
from torch import nn

from geometry import GeometryError, ModelLoadError, load_classifier, zoo_names
from geometry.classifier import Classifier, Normalize, pick_device
from geometry.zoo import build_architecture, zoo_card

EXPECTED_ZOO = {"mnist_lenet_relu", "mnist_lenet_gelu", "mnist_lenet_gelu_pgd", "digits_mlp"}


def _x(shape, n=3, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


def test_zoo_has_the_four_models():
    assert EXPECTED_ZOO <= set(zoo_names())


@pytest.mark.parametrize("name", sorted(EXPECTED_ZOO))
def test_zoo_model_facts(name):
    clf = zoo(name)
    card = zoo_card(name)
    assert clf.input_shape == tuple(card["input_shape"])
    assert clf.class_names == [str(i) for i in range(10)]
    assert clf.pixel_range == (0.0, 1.0)
    assert not clf.module.training
    assert all(not p.requires_grad for p in clf.module.parameters())
    assert clf.device == torch.device("cpu") and clf.dtype == torch.float32
    assert clf.piecewise_linear == (card["activation"] == "relu")


def test_float64_switch_gives_same_predictions():
    clf = zoo("mnist_lenet_gelu")
    clf64 = load_classifier("mnist_lenet_gelu", device="cpu", dtype=torch.float64)
    x = _x(clf.input_shape)
    assert clf64.dtype == torch.float64
    torch.testing.assert_close(clf64.logits(x).float(), clf.logits(x), atol=1e-4, rtol=1e-4)


def test_normalisation_is_folded_into_the_model():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    clf = Classifier.from_module(net, (1, 2, 2), ["a", "b"], mean=[0.5], std=[0.25], device="cpu")
    x = _x((1, 2, 2))
    torch.testing.assert_close(clf.logits(x), net((x - 0.5) / 0.25))


def test_device_choice():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(GeometryError, match="no CUDA GPU"):
            pick_device("cuda")
    for bad in ("bogus", "meta", "cuda:x", 3.5):
        with pytest.raises(GeometryError, match="auto, cpu, cuda or cuda:N"):
            pick_device(bad)


def test_shapes_and_ranges_are_parsed_strictly():
    from geometry.loading import parse_range, parse_shape

    assert parse_shape("1x28x28") == parse_shape([1, 28, 28]) == parse_shape([1.0, "28", 28]) == (1, 28, 28)
    for bad in ([1.5, 28, 28], "1,28,2.5", [True, 28, 28], [0, 28, 28], "-1,28,28", {"c": 1}, [1] * 9):
        with pytest.raises(GeometryError, match="input shape"):
            parse_shape(bad)
    assert parse_range("0,255") == (0.0, 255.0)
    for bad in ("0", "0,1,2", [0, float("nan")], [float("-inf"), 0], [True, 2], "1,0"):
        with pytest.raises(GeometryError, match="pixel range"):
            parse_range(bad)


@pytest.fixture(scope="module")
def gelu():
    return zoo("mnist_lenet_gelu")


def test_torchscript_file(tmp_path, gelu):
    path = tmp_path / "m.pt"
    torch.jit.trace(gelu.module, torch.zeros(1, 1, 28, 28)).save(str(path))
    clf = load_classifier(path, input_shape="1,28,28", device="cpu")
    x = _x(gelu.input_shape)
    torch.testing.assert_close(clf.logits(x), gelu.logits(x))
    assert clf.name == "m" and clf.num_classes == 10


def test_torch_export_program(tmp_path, gelu):
    path = tmp_path / "m.pt2"
    ep = torch.export.export(gelu.module, (torch.zeros(2, 1, 28, 28),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    torch.export.save(ep, str(path))
    (tmp_path / "m.json").write_text(json.dumps({"input_shape": [1, 28, 28], "class_names": list("0123456789")}))
    clf = load_classifier(path, device="cpu")
    x = _x(gelu.input_shape, n=5)
    torch.testing.assert_close(clf.logits(x), gelu.logits(x))


def test_safetensors_zoo_architecture_with_sidecar(tmp_path, gelu):
    card = zoo_card("mnist_lenet_gelu")
    net = gelu.module[1]
    save_file(net.state_dict(), str(tmp_path / "w.safetensors"))
    (tmp_path / "w.json").write_text(json.dumps({k: card[k] for k in (
        "architecture", "arch_kwargs", "input_shape", "pixel_range", "class_names", "mean", "std")}))
    clf = load_classifier(tmp_path / "w.safetensors", device="cpu")
    x = _x(gelu.input_shape)
    torch.testing.assert_close(clf.logits(x), gelu.logits(x))


def test_safetensors_torchvision_architecture(tmp_path):
    net = build_architecture("resnet18", 7)
    net.eval()
    save_file(net.state_dict(), str(tmp_path / "r.safetensors"))
    clf = load_classifier(tmp_path / "r.safetensors", architecture="resnet18", input_shape="3,32,32",
                          class_names=",".join(f"c{i}" for i in range(7)), mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2],
                          device="cpu")
    x = _x((3, 32, 32), n=2)
    with torch.no_grad():
        torch.testing.assert_close(clf.logits(x), net((x - 0.5) / 0.2))
    assert clf.class_names[3] == "c3"


def test_weights_only_state_dict_pt(tmp_path):
    net = build_architecture("mlp", 10, {"input_dim": 64})
    torch.save(net.state_dict(), str(tmp_path / "s.pt"))
    clf = load_classifier(tmp_path / "s.pt", architecture="mlp", input_shape="1,8,8", device="cpu")
    assert clf.num_classes == 10


# ---------------------------------------------------------------- bad input
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/geometry_pwned_marker",))


def test_pickled_object_is_never_unpickled(tmp_path):
    marker = "/tmp/geometry_pwned_marker"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "payload": _Evil()}, str(path))
    with pytest.raises(ModelLoadError, match="never loaded"):
        load_classifier(path, architecture="mlp", input_shape="1,8,8", device="cpu")
    assert not os.path.exists(marker)


def test_old_style_pickle_is_refused(tmp_path):
    path = tmp_path / "old.pth"
    path.write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ModelLoadError, match="not a PyTorch archive"):
        load_classifier(path, input_shape="1,8,8", device="cpu")


def test_random_bytes_are_not_a_model(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(os.urandom(1000))
    with pytest.raises(ModelLoadError, match="not a PyTorch archive"):
        load_classifier(path, input_shape="1,28,28", device="cpu")


def test_truncated_safetensors(tmp_path, gelu):
    path = tmp_path / "t.safetensors"
    save_file(gelu.module[1].state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_classifier(path, architecture="lenet", input_shape="1,28,28", device="cpu")


def test_truncated_torchscript(tmp_path, gelu):
    path = tmp_path / "t.pt"
    torch.jit.trace(gelu.module, torch.zeros(1, 1, 28, 28)).save(str(path))
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(ModelLoadError):
        load_classifier(path, input_shape="1,28,28", device="cpu")


def test_truncated_export(tmp_path, gelu):
    path = tmp_path / "t.pt2"
    torch.export.save(torch.export.export(gelu.module, (torch.zeros(1, 1, 28, 28),)), str(path))
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(ModelLoadError):
        load_classifier(path, input_shape="1,28,28", device="cpu")


def test_wrong_number_of_classes(tmp_path, gelu):
    path = tmp_path / "m.pt"
    torch.jit.trace(gelu.module, torch.zeros(1, 1, 28, 28)).save(str(path))
    with pytest.raises(ModelLoadError, match="outputs 10 logits but 3 class names"):
        load_classifier(path, input_shape="1,28,28", class_names="a,b,c", device="cpu")


def test_model_that_is_not_a_classifier(tmp_path):
    path = tmp_path / "conv.pt"
    torch.jit.trace(nn.Conv2d(1, 2, 3), torch.zeros(1, 1, 8, 8)).save(str(path))
    with pytest.raises(ModelLoadError, match="not a classifier|batch, classes"):
        load_classifier(path, input_shape="1,8,8", device="cpu")


def test_wrong_input_shape(tmp_path, gelu):
    path = tmp_path / "m.pt"
    torch.jit.trace(gelu.module, torch.zeros(1, 1, 28, 28)).save(str(path))
    with pytest.raises(ModelLoadError, match="input-shape"):
        load_classifier(path, input_shape="3,32,32", device="cpu")


def test_missing_facts_and_files(tmp_path, gelu):
    path = tmp_path / "m.pt"
    torch.jit.trace(gelu.module, torch.zeros(1, 1, 28, 28)).save(str(path))
    with pytest.raises(ModelLoadError, match="input shape"):
        load_classifier(path, device="cpu")
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_classifier(tmp_path / "absent.pt", device="cpu")
    with pytest.raises(ModelLoadError, match="neither a bundled model"):
        load_classifier("no_such_model", device="cpu")
    save_file(gelu.module[1].state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(ModelLoadError, match="architecture"):
        load_classifier(tmp_path / "w.safetensors", input_shape="1,28,28", device="cpu")
    with pytest.raises(ModelLoadError, match="do not fit architecture"):
        load_classifier(tmp_path / "w.safetensors", architecture="mlp", input_shape="1,28,28", device="cpu")
    with pytest.raises(ModelLoadError, match="unknown architecture"):
        load_classifier(tmp_path / "w.safetensors", architecture="nonet", input_shape="1,28,28", device="cpu")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_classifier(path, sidecar=tmp_path / "bad.json", device="cpu")
    with pytest.raises(GeometryError, match="input shape"):
        load_classifier(path, input_shape="a,b", device="cpu")


def test_nan_input_is_rejected(gelu):
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(GeometryError, match="NaN"):
        gelu.logits(x)
    with pytest.raises(GeometryError, match="expects"):
        gelu.logits(torch.zeros(1, 3, 28, 28))


def test_normalize_rejects_nonpositive_std():
    with pytest.raises(GeometryError, match="std"):
        Normalize([0.0], [0.0])


def test_to_returns_a_copy_and_keeps_the_original(tmp_path):
    clf = load_classifier("digits_mlp", device="cpu")
    d = clf.double()
    assert d.dtype == torch.float64 and clf.dtype == torch.float32
    path = tmp_path / "m.pt"
    torch.jit.trace(clf.module, torch.zeros(1, 1, 8, 8)).save(str(path))
    ts = load_classifier(path, input_shape="1,8,8", device="cpu")
    assert ts.double().dtype == torch.float64 and ts.dtype == torch.float32
