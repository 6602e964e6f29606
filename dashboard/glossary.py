"""One glossary for the whole app: every technical word has one plain definition, shown on hover.

``term("boundary")`` gives an ``<abbr>`` snippet whose tooltip is the definition (use it in
``st.markdown(..., unsafe_allow_html=True)``); ``plain(text)`` renders a page's plain opening sentence,
``formulas(md)`` puts the maths in an expander (hidden in presentation mode), and ``glossary_section()``
lists every entry. The definitions follow docs/science.md.
"""

from __future__ import annotations

import html
import re

import streamlit as st

from dashboard.ui import presentation

CITATION = ("Fawzi, Moosavi-Dezfooli, Frossard & Soatto, *Empirical study of the topology and geometry of deep "
            "networks*, CVPR 2018 (arXiv:1705.09552, first titled *Classification regions of deep neural networks*)")

# key: (display name, one plain sentence)
TERMS: dict[str, tuple[str, str]] = {
    "classifier": ("classifier", "A model that reads an image and gives one score (logit) per class; the highest "
                   "score is its answer."),
    "logit": ("logit", "The raw score the model gives each class before turning scores into probabilities; the "
              "class with the largest logit is the prediction."),
    "margin": ("margin", "How far ahead the predicted class is: its logit minus the best other class's logit. "
               "Zero means a tie, i.e. the point is on the boundary."),
    "region": ("class region", "All the images the model gives the same answer, for example every image it calls "
               "a 3."),
    "boundary": ("decision boundary", "The surface in image space where the model's answer changes from one class "
                 "to another (two logits are equal there)."),
    "input_space": ("input space", "The space of all images of the model's size: a 28x28 image is one point with "
                    "784 coordinates, one per pixel."),
    "distance": ("distance", "How much an image must change, measured as the L2 length of the change: the square "
                 "root of the sum of squared pixel changes."),
    "deepfool": ("DeepFool", "An attack that finds a small change pushing an image just across the nearest "
                 "boundary, by repeatedly stepping towards the boundary as if it were flat."),
    "adversarial": ("adversarial example", "An image changed by a tiny, usually invisible amount so that the model "
                    "gives a different answer."),
    "normal": ("normal direction", "The direction pointing straight across the boundary (perpendicular to it); "
               "the quickest way to change the model's answer."),
    "tangent": ("tangent direction", "A direction that runs along the boundary instead of across it; moving that "
                "way keeps a boundary point (nearly) on the boundary."),
    "cross_section": ("cross-section", "A flat slice through image space: every point of the picture is the image "
                      "plus a times one direction plus b times another, coloured by the model's answer."),
    "curvature": ("curvature", "How much the boundary bends away from a flat plane; zero means flat, large means "
                  "strongly bent."),
    "principal_curvature": ("principal curvature", "The bending of the boundary along one special direction; the "
                            "directions of strongest bending and their amounts come from the Hessian."),
    "positive_curvature": ("positive curvature", "The boundary bends towards the other class: sliding along "
                           "the boundary that way leads back into the image's own class."),
    "negative_curvature": ("negative curvature", "The boundary bends around the image's own class (like a ball with "
                           "the class inside): sliding along it that way crosses into the other class."),
    "spectrum": ("curvature spectrum", "All principal curvatures at a point, sorted: it shows whether the boundary "
                 "is flat in most directions and curved in a few."),
    "hessian": ("Hessian", "The table of second derivatives of a score: how its slope changes in every pair of "
                "directions. Its largest eigenvalues give the most curved directions."),
    "hvp": ("Hessian-vector product", "The Hessian applied to one direction, computed without ever writing the "
            "whole Hessian down; each costs about two gradient evaluations."),
    "finite_difference": ("finite differences", "Estimating a derivative from the difference of two nearby "
                          "evaluations; used where exact second derivatives are zero almost everywhere (ReLU)."),
    "piecewise_linear": ("piecewise linear", "A network made of ReLUs and max-pooling: it is exactly flat inside "
                         "small cells, so its exact curvature is zero and bending only shows at a scale."),
    "lanczos": ("Lanczos", "A method that finds the largest eigenvalues of a huge matrix using only products with "
                "it, here Hessian-vector products."),
    "pixel_range": ("pixel range", "The values a real image can take, e.g. 0 (black) to 1 (white); points outside "
                    "it are not valid images, though the model still answers there."),
    "path": ("connecting path", "A curve between two images along which every point gets the same answer from "
             "the model."),
    "chord": ("straight line (chord)", "The straight segment between two images; if it leaves the class, a "
              "connecting path must bend around."),
    "connected": ("connected", "A class region is connected when any two of its images can be joined by a path "
                  "that never leaves it."),
    "lipschitz": ("Lipschitz bound", "A guaranteed limit on how fast the model's scores can change with the input; "
                  "it turns a few checked points into a proof for the whole segment between them."),
    "subspace_S": ("shared curved subspace S", "A handful of directions along which the boundary is strongly "
                   "curved near many different images at once, found by averaging curvature over many images."),
    "random_noise": ("random noise", "A change of the image in a random direction, of a chosen length."),
    "fooling_rate": ("fooling rate", "The fraction of images whose answer changes under a perturbation."),
    "detector": ("curvature detector", "A test that flags an image as attacked when the boundary curves the "
                 "'wrong' way along S around it: attacked images sit just past a boundary that bends back."),
    "score": ("detector score", "The number the detector compares with its threshold; it measures how strongly "
              "the boundary bends towards another class along S."),
    "threshold": ("threshold", "The score above which the detector flags an image; set so that only a chosen share "
                  "of clean images is flagged."),
    "fpr": ("false positive rate", "The share of clean, unattacked images that the detector wrongly flags."),
    "roc_auc": ("ROC AUC", "The chance that a random attacked image scores higher than a random clean one: 0.5 is "
                "guessing, 1.0 is perfect."),
    "label_recovery": ("label recovery", "Guessing the true class of a flagged image as the class towards which the "
                       "boundary bends most."),
    "fgsm": ("FGSM", "Fast gradient sign method: one step of fixed length along the gradient of the loss."),
    "pgd": ("PGD", "Projected gradient descent: several small gradient steps, each pulled back to the allowed size."),
    "adversarial_training": ("adversarial training", "Training on attacked images as well, so that the model "
                             "resists them; its boundaries usually sit farther from images and bend less."),
}


def _definition(key: str) -> tuple[str, str]:
    if key not in TERMS:
        raise KeyError(f"glossary has no term {key!r}")
    return TERMS[key]


def term(key: str, text: str | None = None) -> str:
    """An HTML snippet: ``text`` (default: the term's name) with its definition on hover."""
    name, definition = _definition(key)
    return (f'<abbr class="glossary" title="{html.escape(definition, quote=True)}" '
            f'style="text-decoration: underline dotted; cursor: help">{html.escape(text or name)}</abbr>')


_TERM_RE = re.compile(r"\[\[([a-zA-Z_]+)(?:\|([^\]]+))?\]\]")


def expand(text: str) -> str:
    """Replace ``[[key]]`` or ``[[key|shown text]]`` in markdown by hover terms."""
    return _TERM_RE.sub(lambda m: term(m.group(1), m.group(2)), text)


def plain(text: str, always: bool = False) -> None:
    """A page's plain-language opening sentence (``[[key]]`` marks terms); in presentation mode it is
    hidden unless ``always``."""
    if always or not presentation():
        st.markdown(expand(text), unsafe_allow_html=True)


def formulas(md: str, title: str = "The maths") -> None:
    """The formulas behind a page, in an expander (hidden in presentation mode)."""
    if presentation():
        return
    with st.expander(title):
        st.markdown(expand(md), unsafe_allow_html=True)


def glossary_markdown() -> str:
    return "\n".join(f"- **{name}**: {definition}" for name, definition in
                     sorted(TERMS.values(), key=lambda t: t[0].lower()))


def glossary_section(expanded: bool = False) -> None:
    """Every term with its definition (the Lesson page's Glossary)."""
    with st.expander(f"Glossary ({len(TERMS)} terms)", expanded=expanded):
        st.markdown(glossary_markdown())
