"""The reproduction report rendered: ``report.html`` and ``report.md`` from a ``geometry.reproduction.Reproduction``.

Every figure is built by the app's own figure builders (``dashboard/figures``) and themed by the app's theme
(``figures.common.apply_theme``). The report is first assembled as a list of blocks (:class:`Heading`,
:class:`Paragraph`, :class:`Bullets`, :class:`Table`, :class:`Figure`); :func:`to_markdown` and :func:`to_html`
render that one list, each directly (the HTML is never converted from Markdown text), so both files carry the
same words and the same table cells (:func:`cell`).

- ``report.html`` is self-contained: plotly.js is inlined once (Plotly's ``to_html(include_plotlyjs=True)`` for
  the first figure, ``False`` for the rest), every figure is an interactive Plotly div in a ``<figure>`` with the
  anchor ``fig-<name>``; it opens offline.
- ``report.md`` has the text and the tables; each figure is a link to its anchor in ``report.html``. No static
  images are written: Plotly's own image export needs the ``kaleido`` package and a Chrome browser, neither of
  which this tool requires (``requirements.txt``).

Pure: Plotly and the standard library (and NumPy through the builders); no Streamlit.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from dashboard.figures.common import apply_theme
from dashboard.figures.curvature import asymmetry_figure, asymmetry_table
from dashboard.figures.curvature import spectrum_figure as curvature_spectrum_figure
from dashboard.figures.vulnerability import (auc_interval_figure, concentration_figure, fooling_figure, roc_figure,
                                             score_histograms_figure, spectrum_figure, subspace_grid_figure)
from geometry.errors import GeometryError
from geometry.reproduction import Reproduction, verdicts, write_numbers

HTML_NAME = "report.html"
MD_NAME = "report.md"


# ================================================================== blocks
@dataclass(frozen=True)
class Code:
    """Inline code inside a :class:`Paragraph`."""

    text: str


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Text spans (``str`` or :class:`Code`), optionally in italics as a whole (captions, footnotes)."""

    spans: tuple
    italic: bool = False


@dataclass(frozen=True)
class Bullets:
    items: tuple


@dataclass(frozen=True)
class Table:
    header: tuple
    rows: tuple


@dataclass(frozen=True)
class Figure:
    """A Plotly figure with its anchor name, a short title and a caption."""

    name: str
    figure: go.Figure
    title: str
    caption: str


def P(*spans, italic: bool = False) -> Paragraph:
    return Paragraph(tuple(spans), italic)


def T(header, rows) -> Table:
    return Table(tuple(header), tuple(tuple(r) for r in rows))


def cell(v) -> str:
    """One table cell as text, the same in Markdown and HTML."""
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


# ================================================================== rendering
def _md_escape_cell(text: str) -> str:
    return text.replace("|", "\\|")


def _md_spans(spans) -> str:
    return "".join(f"`{s.text}`" if isinstance(s, Code) else str(s) for s in spans)


def to_markdown(blocks: list, html_name: str | None = HTML_NAME) -> str:
    """Markdown of ``blocks``; figures become links to ``html_name#fig-<name>`` (or a note when no HTML exists)."""
    out: list[str] = []
    nfig = 0
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            text = _md_spans(b.spans)
            out += [f"*{text}*" if b.italic else text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {x}" for x in b.items] + [""]
        elif isinstance(b, Table):
            out.append("| " + " | ".join(_md_escape_cell(cell(h)) for h in b.header) + " |")
            out.append("|" + "|".join("---" for _ in b.header) + "|")
            out += ["| " + " | ".join(_md_escape_cell(cell(v)) for v in r) + " |" for r in b.rows]
            out.append("")
        elif isinstance(b, Figure):
            nfig += 1
            where = (f"[interactive figure in {html_name}]({html_name}#fig-{b.name})" if html_name else
                     "drawn only in report.html, which this run did not write")
            out += [f"**Figure {nfig}: {b.title}** ({where})", "", f"*{b.caption}*", ""]
        else:
            raise TypeError(f"unknown report block {type(b).__name__}")
    return "\n".join(out)


def _html_spans(spans) -> str:
    return "".join(f"<code>{html.escape(s.text)}</code>" if isinstance(s, Code) else html.escape(str(s))
                   for s in spans)


STYLE = ("body{font-family:sans-serif;max-width:1040px;margin:2em auto;padding:0 1em;line-height:1.45}"
         "table{border-collapse:collapse;margin:0.6em 0;font-size:0.9em}td,th{border:1px solid #ccc;"
         "padding:3px 7px;text-align:right}th{background:#f3f3f3}figure{margin:1em 0}"
         "figcaption{font-style:italic;font-size:0.92em}code{background:#f4f4f4;padding:0 3px}")


def to_html(blocks: list, title: str) -> str:
    """One self-contained HTML page of ``blocks``: plotly.js inlined once, with the first figure."""
    body: list[str] = []
    nfig = 0
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            text = _html_spans(b.spans)
            body.append(f"<p><i>{text}</i></p>" if b.italic else f"<p>{text}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b.items) + "</ul>")
        elif isinstance(b, Table):
            body.append("<table><tr>" + "".join(f"<th>{html.escape(cell(h))}</th>" for h in b.header) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in r) + "</tr>"
                                  for r in b.rows) + "</table>")
        elif isinstance(b, Figure):
            nfig += 1
            div = pio.to_html(b.figure, full_html=False, include_plotlyjs=nfig == 1, div_id=f"plot-{b.name}",
                              config={"displaylogo": False, "responsive": True})
            body.append(f'<figure id="fig-{html.escape(b.name)}">{div}<figcaption>Figure {nfig}: '
                        f"{html.escape(b.title)}. {html.escape(b.caption)}</figcaption></figure>")
        else:
            raise TypeError(f"unknown report block {type(b).__name__}")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


# ================================================================== the report's content
CAPTIONS = {
    "asymmetry": "Mean of the sorted principal curvatures (k most positive, then k most negative) over held-out "
                 "images, one line per estimator and location, with its 95% bootstrap band; the dashed line is 0.",
    "curvature_spectra": "Principal curvatures (k most positive and k most negative, sorted) at the boundary points "
                         "of held-out images, one line per point.",
    "subspace_spectrum": "Extreme eigenvalues of the average curvature operator over the training images used for "
                         "S (diamonds: the m kept in S).",
    "subspace_directions": "The m directions of S as images (red positive, blue negative, each on its own scale), "
                           "titled by their average curvature.",
    "concentration": "|P_S r|/|r| for DeepFool perturbations of held-out images against a fresh random "
                     "m-dimensional subspace per image (same run); the dashed line is sqrt(m/d).",
    "fooling": "Fraction of (image, draw) pairs whose label changes under random noise of norm eps, uniform on the "
               "sphere inside S or inside the whole space (not clipped to the pixel range).",
    "detector_roc": "ROC of the curvature-asymmetry detector: successfully attacked held-out images (positives) "
                    "against clean held-out images (negatives), per attack and size.",
    "detector_scores": "Detector scores of clean images and of attacked images at the smallest size, with the "
                       "threshold for the target false-positive rate.",
    "preregistered_auc": "ROC AUC on the test half with its 95% percentile bootstrap interval (clean and attacked "
                         "scores resampled separately), per attack and size, for the variant chosen on the "
                         "development half and for the paper's definition.",
}

CONSTRUCTION_NAMES = {"projected": "projected (ours: P H P / |grad F| at boundary points)",
                      "paper": "paper (the authors': raw Hessian at x + 0.8 r)"}


def _pair(row: dict) -> str:
    det, rec = row.get("detection_rate"), row.get("recovery_detected")
    return f"{'-' if det is None else f'{det:.2f}'} / {'-' if rec is None else f'{rec:.2f}'}"


def _figure(name: str, figure: go.Figure, title: str, caption_key: str | None = None) -> Figure:
    """A report figure: the builder's figure in the app's theme, with its caption."""
    return Figure(name, apply_theme(figure), title, CAPTIONS[caption_key or name])


def _constructions(n: dict, s: dict) -> list[tuple[str, dict, dict | None]]:
    """(construction, subspace numbers, concentration numbers) in the run's order (the experiments' S first)."""
    first = s.get("construction", "projected")
    out = [(first, n["subspace"], n.get("concentration"))]
    for c in s.get("constructions", [first])[1:]:
        if f"subspace_{c}" in n:
            out.append((c, n[f"subspace_{c}"], n.get(f"concentration_{c}")))
    return out


def report_blocks(rep: Reproduction) -> list:
    """The whole report as blocks (figures built with the app's builders)."""
    n, s, a = rep.numbers, rep.settings, rep.arrays
    v = verdicts(n)
    B: list = [Heading(f"Reproduction report: {rep.model}", 1),
               P("Fawzi et al., Empirical study of the topology and geometry of deep networks (CVPR 2018) (sections "
                 f"4-5 of docs/science.md) on ", Code(rep.model), f" ({s.get('architecture')}, {s.get('activation')}, "
                 f"held-out accuracy {s.get('held_out_accuracy')}), d = {s['d']}, computed on {s['device']} in "
                 f"{rep.seconds:.0f} s. Generated by ", Code(f"python -m geometry reproduce --model {rep.model}"), "."),
               P("Figures are interactive Plotly figures in report.html (self-contained: plotly.js is inlined, it "
                 "opens offline); report.md links to each. No static images are written: Plotly's image export needs "
                 "the kaleido package and a Chrome browser, which this tool does not require.", italic=True),
               Heading("Findings")]
    order = ["curvature", "concentration"] + [k for k in v if k.startswith("concentration_")] + \
        ["fooling", "detector", "detector_variants", "preregistered", "asymmetry"]
    B.append(Bullets(tuple(v[k] for k in order if k in v)))

    def fig(name, figure, title, caption_key=None):
        B.append(_figure(name, figure, title, caption_key))

    # --- 1. curvature
    if "curvature" in n:
        cv = n["curvature"]
        B += [Heading("1. Curvature of the decision boundary"),
              T(["images", "estimator", "h", "median largest", "median most negative", "mean top-k", "mean bottom-k",
                 "asymmetry", "median distance to boundary"],
                [[cv["images"], cv["estimator"], cv["step"], cv["median_largest"], cv["median_most_negative"],
                  cv["mean_top_k"], cv["mean_bottom_k"], cv["asymmetry_top_over_bottom"],
                  cv["median_boundary_distance"]]])]
        results = a.get("curvature_results") or []
        if results:
            names = [f"image {i + 1}: class {r.label} -> {r.boundary_label}" for i, r in enumerate(results)]
            title = f"Principal curvatures at {len(results)} boundary points ({cv['estimator']})"
            fig("curvature_spectra", curvature_spectrum_figure(results, s["d"], title=title, names=names), title)

    # --- 2. connectivity
    B.append(Heading("2. Connectivity of classification regions"))
    if "connectivity" in n:
        rows = []
        for kind, cn in n["connectivity"].items():
            an, lr, dev = cn.get("anchors") or {}, cn.get("length_ratio") or {}, cn.get("max_chord_deviation") or {}
            proven = cn.get("verified")
            rows.append([kind, f"{cn['connected']}/{cn['pairs']}",
                         "not recorded" if proven is None else f"{proven}/{cn['pairs']}", an.get("median"),
                         an.get("max"), lr.get("median"), dev.get("median"), cn.get("chord_leaves_region_fraction"),
                         cn.get("seconds")])
        B += [P("Piecewise-linear paths inside one classification region (geometry.paths; 'proven' counts the paths "
                "whose every segment was proven by the weight-derived Lipschitz bound): natural pairs are two "
                "held-out images of one class; adversarial pairs join a held-out image to an image of another class "
                "pushed into its class by targeted DeepFool."),
              T(["pairs", "connected", "proven", "median anchors", "max anchors", "median length / chord",
                 "median max deviation / chord", "straight chord leaves the region", "seconds"], rows)]
    else:
        B.append(P("Not computed: " + "; ".join(x for x in rep.notes if x.startswith("Connectivity"))))

    # --- 3. S, both constructions
    cons = _constructions(n, s)
    B += [Heading("3. The shared curved subspace S"),
          P(f"S is built from {n['subspace']['num_points']} training images in two constructions, with the same m "
            f"= {n['subspace']['m']} and selection ({n['subspace'].get('select', 'most')}): the "
            f"{cons[0][0]} construction drives the experiments of sections 4 and 5; "
            + ("the other is measured on the same DeepFool perturbations in section 4." if len(cons) > 1 else
               "no other construction was computed.")),
          T(["construction", "estimator", "m", "positive", "negative", "points", "Hessian-vector products", "seconds",
             "Lanczos converged", "largest |curvature|", "smallest kept |curvature|"],
            [[CONSTRUCTION_NAMES.get(c, c), ss.get("estimator"), ss["m"], ss["positive"], ss["negative"],
              ss["num_points"], ss["hvp_count"], ss["seconds"], ss["converged"],
              max(abs(e) for e in ss["eigenvalues"]) if ss["eigenvalues"] else None,
              min(abs(e) for e in ss["eigenvalues"]) if ss["eigenvalues"] else None] for c, ss, _ in cons])]
    for c, ss, _ in cons:
        B.append(P(f"Average curvature along the directions of S ({c}): "
                   + ", ".join(f"{e:+.3g}" for e in ss["eigenvalues"])))
    for c, ss, _ in cons:
        arr = (a.get("subspaces") or {}).get(c)
        if not arr:
            continue
        if arr.get("images") is not None:
            fig(f"subspace_directions_{c}", subspace_grid_figure(arr["images"], arr["eigenvalues"]),
                f"The directions of S ({c} construction)", "subspace_directions")
        fig(f"subspace_spectrum_{c}", spectrum_figure(arr["spectrum"], arr["eigenvalues"],
                                                      title=f"Average curvature operator ({c}): extreme eigenvalues"),
            f"Extreme eigenvalues of the average curvature operator ({c} construction)", "subspace_spectrum")

    # --- 4. vulnerability
    B += [Heading("4. Curvature and vulnerability"), Heading("Adversarial perturbations concentrate in S?", 3),
          T(["construction", "images", "mean |P_S r|/|r|", "median", "10%-90%", "random subspace mean", "sqrt(m/d)",
             "exact random mean", "gain", "above every random ratio"],
            [[c, cc["images"], cc["mean"], cc["median"],
              f"{cc['q10']:.3f}-{cc['q90']:.3f}" if cc.get("q10") is not None else None, cc["random_mean"],
              cc["expected"], cc["expected_exact"], cc["gain"], cc["fraction_above_random_max"]]
             for c, _, cc in cons if cc])]
    for c, _, cc in cons:
        conc = (a.get("concentration") or {}).get(c)
        if conc is not None and len(conc.ratios):
            fig(f"concentration_{c}", concentration_figure(conc.ratios, conc.random, conc.expected, conc.m,
                                                           title=f"Concentration of DeepFool perturbations in S ({c})"),
                f"Concentration of adversarial perturbations in S ({c} construction)", "concentration")
    f = n["fooling"]
    B += [Heading("Random noise in S fools more often?", 3),
          T(["noise norm eps (L2)", "eps / median DeepFool norm", "fooling rate in S",
             "fooling rate in the whole space"],
            [[e, e / f["reference_norm"] if f.get("reference_norm") else None, x, y]
             for e, x, y in zip(f["eps"], f["subspace"], f["whole"])]),
          P("50% fooling (interpolated in log eps): in S at eps = "
            + (f"{f['eps_50_subspace']:.3g}" if f.get("eps_50_subspace") else "not reached")
            + ", in the whole space at eps = "
            + (f"{f['eps_50_whole']:.3g}" if f.get("eps_50_whole") else "not reached")
            + (f" (ratio {f['eps_50_ratio']:.2f})." if f.get("eps_50_ratio") else "."))]
    fig("fooling", fooling_figure(f["eps"], f["subspace"], f["whole"], n["concentration"]["m"],
                                  title="Fooling rate of random noise: S vs the whole space"),
        f"Fooling rate of random noise in S ({cons[0][0]}) and in the whole space")

    # --- 5. detector
    d = n["detector"]
    det = d["detector"]
    cal = det["calibration"]
    B += [Heading("5. Curvature-asymmetry detector"), P(f"Score definition: {det['definition']}"),
          P(f"Calibration on {cal['images']} clean held-out images: mean rho over classes {cal['mean_rho']:+.3g} "
            f"({cal['fraction_positive_rho']:.0%} positive) -> sign s = {det['sign']:+d}; threshold "
            f"{det['threshold']:.4g} for a target FPR of {det['fpr']:g} (estimator {det['estimator']}"
            + (f", h = {det['step']:.3g}" if det.get("step") else "") + f"). Evaluation on {d['clean_images']} other "
            f"clean held-out images: false-positive rate {d['clean_fpr']:.3f}. FGSM/PGD sizes are multiples of the "
            f"median DeepFool norm of the evaluation images ({d['reference_norm']:.3g}); DeepFool size s means "
            "x + s r."),
          T(["attack", "size", "eps", "success", "mean norm", "AUC", f"detected at FPR {det['fpr']:g}",
             "recovery (detected)", "recovery (all)"],
            [[r["attack"], r["size"], r["eps"], f"{r['succeeded']}/{r['attacked']}", r["mean_norm"], r["auc"],
              r["detection_rate"], r["recovery_detected"], r["recovery_all"]] for r in d["rows"]])]
    ev = a.get("detector")
    if ev is not None:
        fig("detector_roc", roc_figure(ev.rows, ev.detector.fpr), "Detector ROC: attacked vs clean held-out images")
        sizes = sorted({r.size for r in ev.rows})
        if sizes:
            fig("detector_scores", score_histograms_figure(ev.clean_scores, ev.rows, ev.detector.threshold, sizes[0]),
                f"Detector scores, clean vs attacked (size x{sizes[0]:g})")
    B += [Heading("The asymmetry itself: sign of rho before and after the attack", 3),
          P(f"Unsigned rho (before the calibrated sign s): mean over classes c != k of rho_c on clean evaluation "
            f"images: {d['clean_rho']:+.3g}. The paper's asymmetry predicts the opposite sign at the true class after "
            "a small attack (rho_true: rho at the image's true class, now c != k)."),
          T(["attack", "size", "mean rho_true (attacked)", "mean rho over c != k (attacked)",
             "mean rho over c != k (clean)"],
            [[r["attack"], r["size"], r.get("rho_true"), r.get("rho_others"), d["clean_rho"]] for r in d["rows"]])]
    parts = n.get("detector_variants") or {}
    if parts:
        hdr = ["directions", "m", "sign", "clean FPR"] + [f"AUC {r['attack']} x{r['size']:g}" for r in d["rows"]]
        trs = [["S (definition)", det["m"], det["sign"], d["clean_fpr"]] + [r["auc"] for r in d["rows"]]]
        hdr2 = ["directions"] + [f"detected / recovered {r['attack']} x{r['size']:g}" for r in d["rows"]]
        trs2 = [["S (definition)"] + [_pair(r) for r in d["rows"]]]
        for part, pd in parts.items():
            name = f"S{'+' if part == 'positive' else '-'}"
            trs.append([f"{name} ({part})", pd["detector"]["m"], pd["detector"]["sign"], pd["clean_fpr"]]
                       + [r["auc"] for r in pd["rows"]])
            trs2.append([name] + [_pair(r) for r in pd["rows"]])
        B += [Heading("Variant (exploratory): one sign of curvature only", 3),
              P("The same score averaged over the m most positively curved (S+) or the m most negatively curved (S-) "
                "eigenvectors of the same average curvature operator (same Lanczos run), calibrated the same way on "
                "the same clean images and scored on the same attacked images. This is not the definition (S keeps "
                "the m largest |curvatures| of both signs); it was added after seeing that the signal depends on the "
                "sign, and it shows where the signal lives."),
              T(hdr, trs), T(hdr2, trs2),
              P("detected: fraction of successful attacks flagged at the target FPR; recovered: fraction of the "
                "flagged ones whose recovered label is the true label.", italic=True)]

    # --- 6. pre-registered evaluation
    B.append(Heading("6. Pre-registered detector evaluation"))
    pre = n.get("preregistered")
    if pre:
        B += _preregistered_blocks(pre)
    else:
        B.append(P("Not computed: " + ("; ".join(x for x in rep.notes if x.startswith("Pre-registered"))
                                       or "no result.")))

    # --- 7. curvature asymmetry over many images
    B.append(Heading("7. Curvature asymmetry over many images"))
    asym = n.get("asymmetry")
    if asym:
        rows = asymmetry_table(asym)
        B += [P(f"The k = {asym['k']} most positive and k most negative principal curvatures at the boundary point "
                "of each of "
                f"{asym['points']} held-out images and at x + 0.8 r inside its class (r: the authors' DeepFool, at "
                "most 5 iterations), sorted; the figure shows their mean with a "
                f"band: {asym['band']} (docs/science.md, section 3). 'Mostly positive': the sum of the top-k and "
                "bottom-k curvatures is positive at that point."),
              T(list(rows[0]), [list(r.values()) for r in rows]) if rows else P("No entry.")]
        fig("asymmetry", asymmetry_figure(asym), f"Mean sorted principal-curvature spectrum over {asym['points']} "
            "held-out images")
    else:
        B.append(P("Not computed: " + ("; ".join(x for x in rep.notes if x.startswith("Curvature asymmetry"))
                                       or "no result.")))

    if rep.notes:
        B += [Heading("Notes"), Bullets(tuple(rep.notes))]
    B += [Heading("Settings"), T(["setting", "value"], [[k, val] for k, val in s.items()])]
    return B


def _preregistered_blocks(pre: dict) -> list:
    ch, sp, test, st = pre["chosen"], pre["split"], pre["test"], pre["settings"]
    same = pre["chosen_is_paper_definition"]
    key = f"{ch['construction']}/{ch['select']}/{ch['score']}"
    out = [P(f"The protocol of geometry/preregistered.py, fixed before any test image was scored (its own split, "
             f"seed {sp['seed']}): development half {sp['dev_images']} held-out images ({sp['dev_correct']} classified "
             f"correctly), test half {sp['test_images']} ({sp['test_correct']}). Chosen on the development half: ",
             Code(key), " (construction / selection / score)" + (", which is the paper's definition." if same else
                                                                   "; the paper's definition (paper/most/max) is "
                                                                   "evaluated beside it on the same test images.")),
           P(f"Test half, evaluated once: ROC AUC with a {st['confidence']:.0%} bootstrap interval "
             f"({st['bootstrap_resamples']} resamples), detection rate at the development threshold (target FPR "
             f"{st['fpr']:g}) and label recovery.")]
    blocks = {"chosen": test["chosen"]} if same else {"chosen": test["chosen"],
                                                      "paper_definition": test["paper_definition"]}
    rows = []
    for name, block in blocks.items():
        v = block["variant"]
        label = f"{v['construction']}/{v['select']}/{v['score']}" + (" (chosen)" if name == "chosen" else
                                                                       " (paper)")
        for r in block["rows"]:
            ci = (f"{r['auc_low']:.3f}-{r['auc_high']:.3f}" if r.get("auc_low") is not None
                  and r.get("auc_high") is not None else None)
            rows.append([label, r["attack"], r["size"], f"{r['succeeded']}/{r['attacked']}", r["auc"], ci,
                         r["detection_rate"], block["clean_fpr"], r["recovery_detected"], r["recovery_all"]])
    out.append(T(["detector", "attack", "size", "success", "AUC", "95% interval", "detected at dev threshold",
                  "clean test FPR", "recovery (detected)", "recovery (all)"], rows))
    names = {"chosen": f"chosen: {key}", "paper_definition": "paper's definition: paper/most/max"}
    out.append(_figure("preregistered_auc", auc_interval_figure({names[k]: b["rows"] for k, b in blocks.items()}),
                       "Pre-registered evaluation: test-half AUC with 95% intervals"))
    if ch["score"] == "runner-up":
        out.append(P("Label recovery with the runner-up score returns the runner-up class of the logits, which after a "
                     "small attack is usually the original class whatever the curvature says: for this variant the "
                     "recovery columns measure the logits, not the curvature. Its AUC and detection rate are the "
                     "curvature's.", italic=True))
    dev = pre["development"]
    attacks = list(dev["grid"][0]["dev_auc"]) if dev["grid"] and dev["grid"][0]["dev_auc"] else []
    grid_rows = []
    for r in dev["grid"]:
        mark = "chosen" if {k: r[k] for k in ("construction", "select", "score")} == ch else ""
        grid_rows.append([r["construction"], r["select"], r["score"], r["m"], r["sign"]]
                         + [r["dev_auc"].get(x) for x in attacks]
                         + [r["criterion"], mark or (f"not available: {r['error']}" if r["error"] else "")])
    out += [Heading("Development half: the grid", 3), P(f"Criterion: {st['criterion']} (ties: first in grid order)."),
            T(["construction", "select", "score", "m", "sign"] + [f"dev AUC {x}" for x in attacks]
              + ["criterion", ""], grid_rows),
            P(pre["protocol"], italic=True)]
    return out


# ================================================================== writing
def write_report(rep: Reproduction, out_dir: str | Path, formats=("md", "html")) -> dict:
    """Write ``report.md`` and/or ``report.html`` and ``numbers.json`` into ``out_dir``; returns the paths written
    (``{"md", "html", "json"}``)."""
    for fmt in formats:
        if fmt not in ("md", "html"):
            raise GeometryError(f"report format must be md or html, got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    blocks = report_blocks(rep)
    written = {}
    if "md" in formats:
        (out / MD_NAME).write_text(to_markdown(blocks, HTML_NAME if "html" in formats else None))
        written["md"] = str(out / MD_NAME)
    if "html" in formats:
        (out / HTML_NAME).write_text(to_html(blocks, f"Reproduction report: {rep.model}"))
        written["html"] = str(out / HTML_NAME)
    written["json"] = write_numbers(rep, out)
    return written

