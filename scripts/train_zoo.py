"""Reproduce every bundled model in assets/models deterministically (fixed seeds, CPU, one thread).

    python scripts/train_zoo.py            # all models
    python scripts/train_zoo.py mnist_lenet_relu digits_mlp

Writes <name>.safetensors (the network's state dict, normalisation excluded) and
<name>.json (the model card, which is also the loading sidecar) and <name>.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geometry.attacks import pgd  # noqa: E402
from geometry.classifier import Classifier  # noqa: E402
from geometry.data import load_split  # noqa: E402
from geometry.zoo import MODEL_DIR, build_architecture  # noqa: E402

MNIST_MEAN, MNIST_STD = [0.1307], [0.3081]

RECIPES = {
    "mnist_lenet_relu": dict(dataset="mnist", architecture="lenet", arch_kwargs=dict(activation="relu", pooling="max"),
                             epochs=30, lr=2e-3, batch=64, shift=2, seed=1),
    "mnist_lenet_gelu": dict(dataset="mnist", architecture="lenet", arch_kwargs=dict(activation="gelu", pooling="avg"),
                             epochs=30, lr=2e-3, batch=64, shift=2, seed=2),
    "mnist_lenet_gelu_pgd": dict(dataset="mnist", architecture="lenet",
                                 arch_kwargs=dict(activation="gelu", pooling="avg"), epochs=30, lr=2e-3, batch=64,
                                 shift=2, seed=3, pgd=dict(eps=1.5, norm="l2", steps=7)),
    "digits_mlp": dict(dataset="digits", architecture="mlp",
                       arch_kwargs=dict(activation="softplus", input_dim=64, hidden=64, depth=2),
                       epochs=150, lr=3e-3, batch=32, shift=0, seed=4),
}
ROBUST_EVAL = dict(steps=20)


def _shift(x: torch.Tensor, max_shift: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to max_shift pixels (zero padding), one offset per image."""
    if max_shift == 0:
        return x
    b, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None, :])  # (b, h)
    cols = (dx[:, None] + torch.arange(w)[None, :])  # (b, w)
    idx_b = torch.arange(b)[:, None, None]
    return pad[idx_b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def accuracy(clf: Classifier, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((clf.predict(x) == y).float().mean())


def train(name: str) -> dict:
    r = RECIPES[name]
    torch.manual_seed(r["seed"])
    gen = torch.Generator().manual_seed(r["seed"])
    train_split, test_split = load_split(r["dataset"])
    xtr, ytr = train_split.tensors()
    xte, yte = test_split.tensors()
    mean, std = (MNIST_MEAN, MNIST_STD) if r["dataset"] == "mnist" else (None, None)
    net = build_architecture(r["architecture"], 10, r["arch_kwargs"])
    model = Classifier.from_module(net, tuple(xtr.shape[1:]), [str(i) for i in range(10)], mean=mean, std=std,
                                   device="cpu", name=name, dataset=r["dataset"])
    for p in model.module.parameters():
        p.requires_grad_(True)
    opt = torch.optim.Adam(model.module.parameters(), lr=r["lr"])
    steps_per_epoch = (len(xtr) + r["batch"] - 1) // r["batch"]
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=r["epochs"] * steps_per_epoch)
    t0 = time.time()
    for epoch in range(r["epochs"]):
        model.module.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), r["batch"]):
            idx = perm[i:i + r["batch"]]
            xb, yb = _shift(xtr[idx], r["shift"], gen), ytr[idx]
            if "pgd" in r:
                model.module.eval()
                xb = pgd(model, xb, yb, generator=gen, **r["pgd"])
                model.module.train()
            loss = F.cross_entropy(model.module(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.module.eval()
        if epoch % 5 == 4 or epoch == r["epochs"] - 1:
            print(f"{name} epoch {epoch + 1}: held-out accuracy {accuracy(model, xte, yte):.4f} "
                  f"({time.time() - t0:.0f}s)", flush=True)
    model.module.eval()
    for p in model.module.parameters():
        p.requires_grad_(False)
    card = dict(name=name, dataset=r["dataset"], architecture=r["architecture"], arch_kwargs=r["arch_kwargs"],
                activation=r["arch_kwargs"]["activation"], input_shape=list(xtr.shape[1:]), pixel_range=[0.0, 1.0],
                class_names=[str(i) for i in range(10)], mean=mean, std=std, seed=r["seed"], epochs=r["epochs"],
                train_size=len(xtr), held_out_size=len(xte),
                recipe=(f"Adam with one-cycle lr (max {r['lr']}), batch {r['batch']}, {r['epochs']} epochs, random "
                        f"shifts of up to {r['shift']} px, cross-entropy"
                        + (f"; PGD adversarial training ({r['pgd']['norm'].upper()}, eps {r['pgd']['eps']}, "
                           f"{r['pgd']['steps']} steps, random start)" if "pgd" in r else "")),
                held_out_accuracy=round(accuracy(model, xte, yte), 4))
    if "pgd" in r:
        atk = dict(eps=r["pgd"]["eps"], norm=r["pgd"]["norm"], steps=ROBUST_EVAL["steps"])
        xadv = pgd(model, xte, yte, generator=torch.Generator().manual_seed(0), **atk)
        card["attack"] = f"PGD {atk['norm'].upper()} eps {atk['eps']}, {atk['steps']} steps, random start, seed 0"
        card["robust_accuracy"] = round(accuracy(model, xadv, yte), 4)
    net_state = (model.module[1] if mean is not None else model.module).state_dict()
    from safetensors.torch import save_file

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net_state.items()}, str(MODEL_DIR / f"{name}.safetensors"))
    (MODEL_DIR / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    (MODEL_DIR / f"{name}.md").write_text(model_card_markdown(card))
    print(f"{name}: wrote weights and card ({time.time() - t0:.0f}s)", flush=True)
    return card


def model_card_markdown(card: dict) -> str:
    lines = [f"# Model card: {card['name']}", "",
             f"- Dataset: {card['dataset']} ({card['train_size']} training images, {card['held_out_size']} held out; "
             "split fixed by geometry.data.SPLIT_SEED)",
             f"- Architecture: {card['architecture']} {card['arch_kwargs']}",
             f"- Activation: {card['activation']}",
             f"- Input: {card['input_shape']} pixels in {card['pixel_range']}; normalisation "
             f"{'mean ' + str(card['mean']) + ' std ' + str(card['std']) if card['mean'] else 'none'} (inside the model)",
             f"- Recipe: {card['recipe']}",
             f"- Seed: {card['seed']} (CPU, one thread: `python scripts/train_zoo.py {card['name']}`)",
             f"- Held-out accuracy: {card['held_out_accuracy']:.4f}"]
    if "robust_accuracy" in card:
        lines.append(f"- Robust held-out accuracy under {card['attack']}: {card['robust_accuracy']:.4f}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    names = sys.argv[1:] or list(RECIPES)
    for n in names:
        if n not in RECIPES:
            sys.exit(f"unknown model {n!r}; choose from {', '.join(RECIPES)}")
        train(n)
