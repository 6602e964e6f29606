"""``predict``: the model's label and top-k probabilities for one image."""

from __future__ import annotations

from ._common import add_image_arguments, add_model_arguments, image_from_args, model_from_args, positive

HELP = "classify one image: label, class name and top-k probabilities"


def add_arguments(p):
    add_model_arguments(p)
    add_image_arguments(p)
    p.add_argument("--top", type=int, default=5, help="how many classes to list (default 5)")


def validate(args) -> None:
    positive(args.top, "--top", integer=True)


def run(args) -> dict:
    clf = model_from_args(args)
    img = image_from_args(args, clf)
    probs = clf.probabilities(img.tensor)[0]
    top = probs.topk(min(args.top, clf.num_classes))
    label = int(probs.argmax())
    return {"model": clf.name, "device": clf.device.type, "label": label, "class_name": clf.class_names[label],
            "top": [{"label": int(i), "class_name": clf.class_names[int(i)], "probability": float(p)}
                    for p, i in zip(top.values, top.indices)],
            "true_label": img.label, "conversion": img.steps}
