"""The reproduction report: ``geometry.reproduction`` computes (no Plotly), ``dashboard.report`` renders with the
app's figure builders. Checked: ``reproduce`` end to end on digits_mlp (small settings), every figure a Plotly div in
a self-contained HTML page, the same tables in Markdown and HTML, numbers.json's old and new keys, the block
renderers' escaping, and the library's purity."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import plotly.graph_objects as go
import pytest

from conftest import ROOT

SMALL = ["--model", "digits_mlp", "--subspace-images", "12", "--m", "4", "--curvature-images", "2",
         "--curvature-k", "3", "--images", "20", "--draws", "2", "--calibration-images", "20",
         "--evaluation-images", "20", "--sizes", "1,2", "--connectivity-pairs", "0", "--asymmetry-points", "6",
         "--quiet"]

OLD_NUMBERS = {"curvature", "subspace", "concentration", "fooling", "detector", "detector_variants"}
NEW_NUMBERS = {"subspace_paper", "concentration_paper", "preregistered", "asymmetry"}


def markdown_tables(text: str) -> list[list[list[str]]]:
    """Tables of a Markdown text as rows of cells (escaped pipes restored)."""
    tables, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                cur.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])])
        elif cur:
            tables.append(cur)
            cur = []
    return tables


class _Tables(HTMLParser):
    """Tables of an HTML page as rows of cell texts; also the ids of <figure> elements and <script> attributes."""

    def __init__(self):
        super().__init__()
        self.tables, self.figures, self.scripts = [], [], []
        self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""
        elif tag == "figure":
            self.figures.append(dict(attrs).get("id"))
        elif tag == "script":
            self.scripts.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def _parse(page: str) -> _Tables:
    p = _Tables()
    p.feed(page)
    return p


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory):
    from geometry.cli import main

    tmp = tmp_path_factory.mktemp("report")
    out_dir = tmp / "rep"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["reproduce", *SMALL, "--out", str(out_dir), "--cache-dir", str(tmp / "cache"), "--json"])
    assert rc == 0
    return out_dir, json.loads(buf.getvalue()), tmp


def test_reproduce_end_to_end_writes_md_html_and_numbers(reproduced):
    out_dir, res, _ = reproduced
    md = (out_dir / "report.md").read_text()
    numbers = json.loads((out_dir / "numbers.json").read_text())
    for section in ("Curvature of the decision boundary", "shared curved subspace S", "concentrate in S",
                    "fools more often", "Curvature-asymmetry detector", "Pre-registered detector evaluation",
                    "Settings"):
        assert section in md, section
    # the CLI's JSON fields (public contract) and the report files
    assert set(res) >= {"model", "device", "seconds", "written", "summary", "verdicts", "notes"}
    assert res["summary"]["model"] == "digits_mlp" and set(res["written"]) == {"md", "html", "json"}
    assert not list(out_dir.glob("*.svg")) and not list(out_dir.glob("*.png"))  # no hand-drawn figure files
    n = numbers["numbers"]
    assert set(n) >= OLD_NUMBERS | NEW_NUMBERS, set(n)
    assert set(numbers) >= {"model", "numbers", "settings", "notes", "verdicts", "summary", "seconds"}
    rows = n["detector"]["rows"]
    assert len(rows) == 6 and {r["attack"] for r in rows} == {"deepfool", "fgsm", "pgd"}
    assert res["summary"]["auc"] == {f"{r['attack']} x{r['size']:g}": r["auc"] for r in rows}
    assert set(n["detector_variants"]) == {"positive", "negative"}
    assert numbers["settings"]["m"] == 4 and "timings_s" in numbers["settings"]
    # both constructions of S, same m, measured on the same DeepFool perturbations
    assert n["subspace"]["construction"] == "projected" and n["subspace_paper"]["construction"] == "paper"
    assert n["subspace_paper"]["m"] == n["subspace"]["m"] == 4 and len(n["subspace_paper"]["eigenvalues"]) == 4
    assert n["subspace_paper"]["estimator"] == "fd"
    assert n["concentration_paper"]["images"] == n["concentration"]["images"]
    assert n["concentration_paper"]["random_mean"] == n["concentration"]["random_mean"]  # same r, same seed
    assert n["concentration_paper"]["mean"] != n["concentration"]["mean"]
    assert numbers["settings"]["constructions"] == ["projected", "paper"]
    # the pre-registered evaluation: chosen variant, test-half AUC with its interval per attack and size
    pre = n["preregistered"]
    assert pre["split"]["dev_images"] == pre["split"]["test_images"] == 20
    for name in ("chosen", "paper_definition"):
        block = pre["test"][name]
        assert [(r["attack"], r["size"]) for r in block["rows"]] == \
            [(a, s) for a in ("deepfool", "fgsm", "pgd") for s in (1.0, 1.5, 2.0)]  # the protocol's sizes
        for r in block["rows"]:
            if r["auc"] is not None:
                assert r["auc_low"] - 1e-12 <= r["auc"] <= r["auc_high"] + 1e-12
    assert pre["test"]["paper_definition"]["variant"] == {"construction": "paper", "select": "most", "score": "max"}
    assert res["summary"]["preregistered"]["chosen"] == "/".join(pre["chosen"][k] for k in
                                                                  ("construction", "select", "score"))
    # the asymmetry statistics (geometry.asymmetry at its defaults; digits_mlp is smooth: exact, both locations)
    asym = n["asymmetry"]
    assert asym["points"] == 6 and asym["estimators"] == ["exact"]
    assert {e["location"] for e in asym["results"]} == {"boundary", "inside"}
    for e in asym["results"]:
        assert len(e["mean"]) == len(e["band_low"]) == 2 * asym["k"]
        assert all(lo - 1e-12 <= m <= hi + 1e-12 for lo, m, hi in zip(e["band_low"], e["mean"], e["band_high"]))
    assert [r["ratio"] for r in res["summary"]["asymmetry"]] == [e["asymmetry_ratio"] for e in asym["results"]]
    assert "Curvature asymmetry over many images" in md
    assert set(res["verdicts"]) >= {"concentration", "concentration_paper", "detector", "preregistered",
                                    "asymmetry"}
    for v in res["verdicts"].values():
        assert v in md


def test_html_is_self_contained_with_every_figure_a_plotly_div(reproduced):
    out_dir, _, _ = reproduced
    md = (out_dir / "report.md").read_text()
    page = (out_dir / "report.html").read_text()
    p = _parse(page)
    figures = [f for f in p.figures if f]
    # every figure the Markdown names is a <figure> anchor in the HTML holding one Plotly div, and back
    links = re.findall(r"\(report\.html#(fig-[\w-]+)\)", md)
    assert links and links == figures
    assert page.count('class="plotly-graph-div"') == len(figures)
    for f in figures:
        start = page.index(f'<figure id="{f}">')
        inside = page[start:page.index("</figure>", start)]
        assert inside.count('class="plotly-graph-div"') == 1 and f'<div id="plot-{f[4:]}" class="plotly-graph-div"' \
            in inside and re.search(rf'Plotly\.newPlot\(\s*"plot-{f[4:]}"', inside), f
    expected = {"fig-curvature_spectra", "fig-subspace_directions_projected", "fig-subspace_spectrum_projected",
                "fig-subspace_directions_paper", "fig-subspace_spectrum_paper", "fig-concentration_projected",
                "fig-concentration_paper", "fig-fooling", "fig-detector_roc", "fig-detector_scores",
                "fig-preregistered_auc", "fig-asymmetry"}
    assert set(figures) == expected
    # self-contained: no script loaded from anywhere, plotly.js inlined exactly once, no stylesheet links
    assert p.scripts and all("src" not in attrs for attrs in p.scripts)
    assert len(re.findall(r"plotly\.js v\d", page)) == 1
    assert "<link" not in page and not re.search(r'<img[^>]+src="(?!data:)', page)


def test_markdown_and_html_have_the_same_tables(reproduced):
    out_dir, _, _ = reproduced
    md_tables = markdown_tables((out_dir / "report.md").read_text())
    html_tables = _parse((out_dir / "report.html").read_text()).tables
    assert len(md_tables) >= 10
    assert md_tables == html_tables


def test_markdown_only_with_the_paper_construction_first(reproduced, capsys):
    from geometry.cli import main

    _, _, tmp = reproduced
    out_dir = tmp / "md_only"
    assert main(["reproduce", *SMALL, "--format", "md", "--no-preregistered", "--construction", "paper",
                 "--asymmetry-points", "0",
                 "--out", str(out_dir), "--cache-dir", str(tmp / "cache")]) == 0
    md = (out_dir / "report.md").read_text()
    assert not (out_dir / "report.html").exists() and "report.html#" not in md
    assert "drawn only in report.html, which this run did not write" in md
    numbers = json.loads((out_dir / "numbers.json").read_text())
    assert "preregistered" not in numbers["numbers"] and numbers["settings"]["preregistered"] is False
    assert any(x.startswith("Pre-registered evaluation: skipped") for x in numbers["notes"])
    assert "Not computed: Pre-registered evaluation: skipped" in md
    assert "asymmetry" not in numbers["numbers"] and "Not computed: Curvature asymmetry: skipped" in md
    assert "md: " in capsys.readouterr().out
    # --construction picks the S of the experiments; the other one is reported beside it
    n = numbers["numbers"]
    assert n["subspace"]["construction"] == "paper" and n["subspace_projected"]["construction"] == "projected"
    assert "concentration_projected" in n and "subspace_paper" not in n
    assert numbers["settings"]["constructions"] == ["paper", "projected"]


def test_too_many_held_out_images_fail_before_any_work(tmp_path, capsys):
    from geometry.cli import main

    # digits keeps 360 held-out images: 200 + 200 cannot be drawn, said at once (not after the whole run)
    assert main(["reproduce", "--model", "digits_mlp", "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "calibration_images + evaluation_images = 400 exceeds the 360 held-out images" in err
    assert "Traceback" not in err and not (tmp_path / "r").exists()


def test_block_renderers_escape_and_agree():
    from dashboard.report import Bullets, Code, Figure, Heading, P, T, to_html, to_markdown

    fig = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    blocks = [Heading("<b>title</b>", 1), P("a <script>alert(1)</script> & ", Code("x|y<")),
              Bullets(("one < two",)), T(["a|b", "c"], [[1.5, None], ["<i>", float("nan")], [True, 2e-5]]),
              Figure("f1", fig, "T <x>", "caption & more")]
    md, page = to_markdown(blocks), to_html(blocks, "t <x>")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<code>x|y&lt;</code>" in page and "<title>t &lt;x&gt;</title>" in page
    assert markdown_tables(md) == _parse(page).tables == [[["a|b", "c"], ["1.5", "-"], ["<i>", "nan"],
                                                           ["yes", "2.00e-05"]]]
    assert "(report.html#fig-f1)" in md and '<figure id="fig-f1">' in page
    assert to_markdown(blocks, None).count("report.html#") == 0
    with pytest.raises(TypeError, match="unknown report block"):
        to_markdown(["plain text"])


def test_unknown_format_is_a_clear_error(tmp_path):
    from dashboard.report import write_report
    from geometry.errors import GeometryError
    from geometry.reproduction import Reproduction

    with pytest.raises(GeometryError, match="report format must be md or html"):
        write_report(Reproduction("m", {}, {}), tmp_path, formats=("pdf",))


def test_reproduction_imports_no_plotly_and_old_name_still_works():
    code = ("import sys, geometry.reproduction, geometry.report, geometry.commands.reproduce\n"
            "assert geometry.report.run_reproduction is geometry.reproduction.run_reproduction\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('plotly', 'streamlit', 'dashboard'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout


def test_auc_interval_figure_draws_each_interval_and_skips_missing_aucs():
    from dashboard.figures.vulnerability import auc_interval_figure

    rows = [{"attack": "deepfool", "size": 1.0, "auc": 0.9, "auc_low": 0.8, "auc_high": 0.95},
            {"attack": "fgsm", "size": 1.5, "auc": None, "auc_low": None, "auc_high": None},
            {"attack": "pgd", "size": 2.0, "auc": 0.5, "auc_low": 0.4, "auc_high": 0.7}]
    fig = auc_interval_figure({"chosen": rows, "paper": rows[:1]})
    a, b = fig.data
    assert list(a.x) == ["deepfool x1", "pgd x2"] and list(b.x) == ["deepfool x1"]
    assert list(a.y) == [0.9, 0.5]
    assert list(a.error_y.array) == pytest.approx([0.05, 0.2]) and list(a.error_y.arrayminus) == pytest.approx([0.1, 0.1])
