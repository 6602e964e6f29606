"""The number-bearing tables of README.md and docs/*.md are generated (scripts/readme_numbers.py) from committed
artifacts: reports/*/numbers.json, reports/*/detector_preregistered.json and bench/results/*.json.

- The committed files are what the generator writes (``--check`` exits 0); a stale block makes it exit 1 naming it.
- A changed report changes the generated table; a key missing from a report renders "not in report".
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
from conftest import ROOT

spec = importlib.util.spec_from_file_location("readme_numbers", ROOT / "scripts" / "readme_numbers.py")
rn = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rn)


def test_committed_readme_and_docs_match_the_artifacts(capsys):
    code = rn.main(["--check"])
    out = capsys.readouterr()
    assert code == 0, ("README.md / docs are out of date with reports/ and bench/results/: run "
                       f"`python scripts/readme_numbers.py`\n{out.err}\n{out.out}")


def test_readme_has_the_generated_blocks():
    text = (ROOT / "README.md").read_text()
    for name in ("reproduction", "reproduction-summary", "benchmarks"):
        assert f"<!-- generated:{name} -->" in text and f"<!-- /generated:{name} -->" in text
    body = rn.BLOCK.search(text).group("body")
    assert body.count("\n| `mnist_lenet") == len(rn.models(ROOT))  # one row per committed report


@pytest.fixture()
def copy(tmp_path):
    """A copy of the files the generator reads and writes."""
    for rel in ["README.md", "docs", "bench/results"] + [str(p.relative_to(ROOT)) for p in
                                                        (ROOT / "reports").glob("*/*.json")]:
        src, dst = ROOT / rel, tmp_path / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.exists():
            shutil.copy(src, dst)
    return tmp_path


def _block(root, name, file="README.md"):
    text = (root / file).read_text()
    return next(mo["body"] for mo in rn.BLOCK.finditer(text) if mo["name"] == name)


def test_a_changed_report_changes_the_table(copy, capsys):
    path = copy / "reports" / "mnist_lenet_gelu" / "numbers.json"
    d = json.loads(path.read_text())
    d["numbers"]["concentration"]["mean"] = 0.987654
    d["numbers"]["connectivity"]["natural"]["connected"] = 7
    path.write_text(json.dumps(d))
    before = _block(copy, "reproduction")
    assert rn.main(["--check", "--root", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "README.md: reproduction" in err and "docs/vulnerability.md: vulnerability-results" in err
    assert rn.main(["--root", str(copy)]) == 0
    after = _block(copy, "reproduction")
    assert after != before
    row = next(line for line in after.splitlines() if line.startswith("| `mnist_lenet_gelu`"))
    assert "0.988 (" in row and "7/10 / 10/10" in row
    assert rn.main(["--check", "--root", str(copy)]) == 0


def test_a_missing_key_renders_not_in_report(copy):
    path = copy / "reports" / "mnist_lenet_relu" / "numbers.json"
    d = json.loads(path.read_text())
    del d["numbers"]["fooling"]
    path.write_text(json.dumps(d))
    (copy / "reports" / "mnist_lenet_relu" / "detector_preregistered.json").unlink()
    assert rn.main(["--root", str(copy)]) == 0
    row = next(line for line in _block(copy, "reproduction").splitlines() if line.startswith("| `mnist_lenet_relu`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == rn.MISSING and cells[6] == rn.MISSING and cells[7] == rn.MISSING
    assert cells[1].startswith(f"{d['numbers']['concentration']['mean']:.3f}")  # the rest of the row is still there


def test_bench_table_follows_the_results(copy):
    res = sorted((copy / "bench" / "results").glob("*.json"))
    if not res:
        pytest.skip("no bench results committed")
    d = json.loads(res[0].read_text())
    m = next(m for m in d["measures"].values() if m.get("ratio"))
    m["ratio"].update(median=123.456, min=100.0, max=150.0)
    res[0].write_text(json.dumps(d))
    assert rn.main(["--root", str(copy)]) == 0
    text = "".join(_block(copy, name, f) for f, name in
                   [("README.md", "benchmarks")] + [(str(p.relative_to(copy)), mo["name"])
                                                   for p in (copy / "docs").glob("*.md")
                                                   for mo in rn.BLOCK.finditer(p.read_text())
                                                   if mo["name"] == f"bench:{res[0].stem}"])
    assert "123.46 (" in text and "100.00-150.00)" in text


def test_unknown_block_is_an_error(copy):
    (copy / "README.md").write_text("<!-- generated:nonsense -->\nx\n<!-- /generated:nonsense -->\n")
    with pytest.raises(SystemExit, match="unknown generated block 'nonsense'"):
        rn.main(["--root", str(copy)])
