"""Check the class palette under simulated colour-vision deficiency and write docs/palette.md.

    python scripts/palette_check.py            # write docs/palette.md
    python scripts/palette_check.py --check    # exit 1 if docs/palette.md is stale or the palette fails
    python scripts/palette_check.py --search   # rerun the subset search over the Okabe-Ito / Tol colours

The computation (Machado et al. 2009 simulation, CIEDE2000) is in dashboard/figures/palette.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard.figures import palette  # noqa: E402

DOC = ROOT / "docs" / "palette.md"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare docs/palette.md with a fresh computation")
    ap.add_argument("--search", action="store_true", help="print the best 10-colour subset of the candidates")
    args = ap.parse_args(argv)
    if args.search:
        names = palette.best_subset(palette.candidates(), len(palette.CLASS_PALETTE))
        hexes = [palette.SOURCE_POOL[n] for n in names]
        for n, h in zip(names, hexes):
            print(f"{h}  {n}")
        print(f"smallest CIEDE2000 over all vision types: {palette.min_over_visions(hexes):.2f}")
        return 0
    text = palette.markdown()
    hexes = palette.class_hexes()
    worst = palette.min_over_visions(hexes)
    passes = worst > palette.THRESHOLD
    if args.check:
        current = DOC.read_text() if DOC.exists() else ""
        if current != text:
            print(f"{DOC.relative_to(ROOT)} is stale: run python scripts/palette_check.py")
            return 1
        print(f"{DOC.relative_to(ROOT)} is up to date; smallest CIEDE2000 {worst:.2f} "
              f"({'above' if passes else 'NOT above'} {palette.THRESHOLD:g})")
        return 0 if passes else 1
    DOC.write_text(text)
    print(f"wrote {DOC.relative_to(ROOT)}; smallest CIEDE2000 over all vision types {worst:.2f} "
          f"({'above' if passes else 'NOT above'} {palette.THRESHOLD:g})")
    return 0 if passes else 1


if __name__ == "__main__":
    sys.exit(main())
