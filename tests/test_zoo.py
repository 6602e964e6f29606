"""Bundled models reach their recorded held-out accuracy (computed here), and training is reproducible."""

from __future__ import annotations

import sys

import pytest
import torch
from conftest import ROOT, zoo

from geometry.attacks import pgd
from geometry.data import held_out
from geometry.zoo import zoo_card

sys.path.insert(0, str(ROOT / "scripts"))
import train_zoo  # noqa: E402

NAMES = ["mnist_lenet_relu", "mnist_lenet_gelu", "mnist_lenet_gelu_pgd", "digits_mlp"]


@pytest.mark.parametrize("name", NAMES)
def test_held_out_accuracy_matches_card(name):
    clf = zoo(name)
    card = zoo_card(name)
    x, y = held_out(card["dataset"]).tensors()
    acc = float((clf.predict(x) == y).float().mean())
    assert acc == pytest.approx(card["held_out_accuracy"], abs=1.5e-3)
    if card["dataset"] == "mnist":
        assert acc >= 0.97
    for key in ("architecture", "activation", "recipe", "seed", "held_out_accuracy", "input_shape", "pixel_range",
                "class_names"):
        assert key in card


def test_robust_accuracy_matches_card():
    name = "mnist_lenet_gelu_pgd"
    clf, card = zoo(name), zoo_card(name)
    x, y = held_out("mnist").tensors()
    eps = train_zoo.RECIPES[name]["pgd"]["eps"]
    xadv = pgd(clf, x, y, eps=eps, norm="l2", steps=train_zoo.ROBUST_EVAL["steps"],
               generator=torch.Generator().manual_seed(0))
    assert ((xadv - x).flatten(1).norm(dim=1) <= eps + 1e-4).all()
    robust = float((clf.predict(xadv) == y).float().mean())
    assert robust == pytest.approx(card["robust_accuracy"], abs=0.01)
    # the adversarially trained model is more robust than the standard one under the same attack
    plain = zoo("mnist_lenet_gelu")
    xadv_plain = pgd(plain, x, y, eps=eps, norm="l2", steps=train_zoo.ROBUST_EVAL["steps"],
                     generator=torch.Generator().manual_seed(0))
    assert robust > float((plain.predict(xadv_plain) == y).float().mean()) + 0.1


def test_training_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setattr(train_zoo, "MODEL_DIR", tmp_path)
    recipe = dict(train_zoo.RECIPES["digits_mlp"], epochs=2)
    monkeypatch.setitem(train_zoo.RECIPES, "tiny", recipe)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        a = train_zoo.train("tiny")
        wa = (tmp_path / "tiny.safetensors").read_bytes()
        b = train_zoo.train("tiny")
        wb = (tmp_path / "tiny.safetensors").read_bytes()
    finally:
        torch.set_num_threads(threads)
    assert wa == wb and a == b
