"""Colour science for the class palette: colour-vision-deficiency simulation and colour differences.

Used by ``scripts/palette_check.py`` (which writes docs/palette.md) and by tests/test_figures.py; pure NumPy.

- sRGB <-> linear RGB: the IEC 61966-2-1 transfer function.
- Colour-vision deficiency: Machado, Oliveira & Fernandes (2009), "A physiologically-based model for
  simulation of color vision deficiency", IEEE TVCG 15(6); the severity-1.0 matrices for protanopia,
  deuteranopia and tritanopia, applied to linear RGB and clipped to the gamut.
- Colour difference: CIEDE2000 (Sharma, Wu & Dalal 2005, "The CIEDE2000 color-difference formula:
  implementation notes") on CIELAB under D65.
"""

from __future__ import annotations

import itertools

import numpy as np

# Machado et al. (2009), severity 1.0, linear RGB -> simulated linear RGB (rows sum to 1: greys stay grey)
MACHADO_2009 = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779],
                            [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}
VISIONS = ("normal", "deuteranopia", "protanopia", "tritanopia")

# linear sRGB (D65) -> CIE XYZ, and the D65 white point
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])


def hex_to_rgb(hexes) -> np.ndarray:
    """'#RRGGBB' strings -> (n, 3) sRGB in [0, 1]."""
    out = []
    for h in hexes:
        s = h.lstrip("#")
        if len(s) != 6:
            raise ValueError(f"not a #RRGGBB colour: {h!r}")
        out.append([int(s[i:i + 2], 16) / 255.0 for i in (0, 2, 4)])
    return np.asarray(out, dtype=float).reshape(-1, 3)


def rgb_to_hex(rgb) -> list[str]:
    rgb = np.clip(np.round(np.asarray(rgb, dtype=float).reshape(-1, 3) * 255), 0, 255).astype(int)
    return ["#%02X%02X%02X" % tuple(c) for c in rgb]


def srgb_to_linear(c) -> np.ndarray:
    c = np.asarray(c, dtype=float)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c) -> np.ndarray:
    c = np.clip(np.asarray(c, dtype=float), 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def simulate(rgb, vision: str) -> np.ndarray:
    """sRGB colours (n, 3) as seen with ``vision`` ("normal" or a key of :data:`MACHADO_2009`), in sRGB."""
    rgb = np.asarray(rgb, dtype=float).reshape(-1, 3)
    if vision == "normal":
        return rgb.copy()
    if vision not in MACHADO_2009:
        raise ValueError(f"unknown vision {vision!r}; use one of {', '.join(VISIONS)}")
    lin = srgb_to_linear(rgb) @ MACHADO_2009[vision].T
    return linear_to_srgb(lin)


def srgb_to_lab(rgb) -> np.ndarray:
    """sRGB (n, 3) in [0, 1] -> CIELAB (n, 3) under D65."""
    xyz = srgb_to_linear(np.asarray(rgb, dtype=float).reshape(-1, 3)) @ _RGB_TO_XYZ.T
    t = xyz / _WHITE_D65
    d = 6.0 / 29.0
    f = np.where(t > d ** 3, np.cbrt(t), t / (3 * d * d) + 4.0 / 29.0)
    L = 116.0 * f[:, 1] - 16.0
    a = 500.0 * (f[:, 0] - f[:, 1])
    b = 200.0 * (f[:, 1] - f[:, 2])
    return np.stack([L, a, b], axis=1)


def ciede2000(lab1, lab2) -> np.ndarray:
    """CIEDE2000 colour difference between CIELAB colours (broadcast over leading axes), kL = kC = kH = 1."""
    lab1 = np.asarray(lab1, dtype=float)
    lab2 = np.asarray(lab2, dtype=float)
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    C1 = np.hypot(a1, b1)
    C2 = np.hypot(a2, b2)
    Cm = (C1 + C2) / 2
    G = 0.5 * (1 - np.sqrt(Cm ** 7 / (Cm ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + G) * a1, (1 + G) * a2
    C1p, C2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.where((a1p == 0) & (b1 == 0), 0.0, np.degrees(np.arctan2(b1, a1p)) % 360)
    h2p = np.where((a2p == 0) & (b2 == 0), 0.0, np.degrees(np.arctan2(b2, a2p)) % 360)
    dLp = L2 - L1
    dCp = C2p - C1p
    zero = (C1p * C2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(zero, 0.0, dh)
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dh) / 2)
    Lpm = (L1 + L2) / 2
    Cpm = (C1p + C2p) / 2
    hsum = h1p + h2p
    hpm = np.where(zero, hsum,
                   np.where(np.abs(h1p - h2p) <= 180, hsum / 2,
                            np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2)))
    T = (1 - 0.17 * np.cos(np.radians(hpm - 30)) + 0.24 * np.cos(np.radians(2 * hpm))
         + 0.32 * np.cos(np.radians(3 * hpm + 6)) - 0.20 * np.cos(np.radians(4 * hpm - 63)))
    dtheta = 30 * np.exp(-(((hpm - 275) / 25) ** 2))
    Rc = 2 * np.sqrt(Cpm ** 7 / (Cpm ** 7 + 25.0 ** 7))
    Sl = 1 + 0.015 * (Lpm - 50) ** 2 / np.sqrt(20 + (Lpm - 50) ** 2)
    Sc = 1 + 0.045 * Cpm
    Sh = 1 + 0.015 * Cpm * T
    Rt = -np.sin(np.radians(2 * dtheta)) * Rc
    return np.sqrt((dLp / Sl) ** 2 + (dCp / Sc) ** 2 + (dHp / Sh) ** 2 + Rt * (dCp / Sc) * (dHp / Sh))


def pairwise_delta_e(hexes, vision: str = "normal") -> np.ndarray:
    """(n, n) CIEDE2000 differences between the colours as seen with ``vision`` (diagonal: inf)."""
    lab = srgb_to_lab(simulate(hex_to_rgb(hexes), vision))
    d = ciede2000(lab[:, None, :], lab[None, :, :])
    np.fill_diagonal(d, np.inf)
    return d


def worst_pair(hexes, vision: str = "normal") -> tuple[float, int, int]:
    """(smallest pairwise CIEDE2000, i, j) with i < j, under ``vision``."""
    d = pairwise_delta_e(hexes, vision)
    i, j = np.unravel_index(np.argmin(d), d.shape)
    i, j = sorted((int(i), int(j)))
    return float(d[i, j]), i, j


def palette_report(hexes) -> dict:
    """Per vision type: the smallest pairwise CIEDE2000, its pair, and the pair's simulated colours."""
    out = {}
    for vision in VISIONS:
        de, i, j = worst_pair(hexes, vision)
        sim = rgb_to_hex(simulate(hex_to_rgb([hexes[i], hexes[j]]), vision))
        out[vision] = {"min_delta_e": de, "pair": (i, j), "seen_as": sim}
    return out


def min_over_visions(hexes) -> float:
    return min(worst_pair(hexes, v)[0] for v in VISIONS)


def best_subset(pool: dict[str, str], size: int, start: list[str] | None = None) -> list[str]:
    """A ``size``-colour subset of ``pool`` (name -> hex) with a large smallest CIEDE2000 over all vision types:
    greedy farthest-point start, then single swaps while any swap improves it (deterministic). Returns names."""
    names = list(pool)
    hexes = np.array([pool[n] for n in names])
    D = np.stack([pairwise_delta_e(hexes, v) for v in VISIONS]).min(axis=0)  # (n, n), worst over visions

    def score(idx):
        sub = D[np.ix_(idx, idx)]
        return float(sub.min())

    if start:
        chosen = [names.index(n) for n in start]
    else:
        i, j = np.unravel_index(np.argmax(np.where(np.isinf(D), -1, D)), D.shape)
        chosen = [int(i), int(j)]
    while len(chosen) < size:
        rest = [k for k in range(len(names)) if k not in chosen]
        chosen.append(max(rest, key=lambda k: (D[k, chosen].min(), -k)))
    improved = True
    while improved:
        improved = False
        base = score(chosen)
        for pos, k_out in itertools.product(range(len(chosen)), range(len(names))):
            if k_out in chosen:
                continue
            trial = chosen.copy()
            trial[pos] = k_out
            if score(trial) > base + 1e-9:
                chosen, base, improved = trial, score(trial), True
    return [names[k] for k in chosen]


# ------------------------------------------------------------------ the candidate colours and the class palette
# Published colour-blind-safe qualitative schemes: Okabe & Ito (2008, "Color Universal Design"), and Paul Tol's
# "bright", "vibrant", "muted", "light" and "high-contrast" schemes (Tol 2021, "Colour Schemes", SRON/EPS/TN/09-002).
SOURCE_POOL = {
    "Okabe-Ito orange": "#E69F00", "Okabe-Ito sky blue": "#56B4E9", "Okabe-Ito bluish green": "#009E73",
    "Okabe-Ito yellow": "#F0E442", "Okabe-Ito blue": "#0072B2", "Okabe-Ito vermillion": "#D55E00",
    "Okabe-Ito reddish purple": "#CC79A7", "Okabe-Ito grey": "#999999",
    "Tol bright blue": "#4477AA", "Tol bright cyan": "#66CCEE", "Tol bright green": "#228833",
    "Tol bright yellow": "#CCBB44", "Tol bright red": "#EE6677", "Tol bright purple": "#AA3377",
    "Tol bright grey": "#BBBBBB",
    "Tol vibrant blue": "#0077BB", "Tol vibrant cyan": "#33BBEE", "Tol vibrant teal": "#009988",
    "Tol vibrant orange": "#EE7733", "Tol vibrant red": "#CC3311", "Tol vibrant magenta": "#EE3377",
    "Tol muted indigo": "#332288", "Tol muted cyan": "#88CCEE", "Tol muted teal": "#44AA99",
    "Tol muted green": "#117733", "Tol muted olive": "#999933", "Tol muted sand": "#DDCC77",
    "Tol muted rose": "#CC6677", "Tol muted wine": "#882255", "Tol muted purple": "#AA4499",
    "Tol pale grey": "#DDDDDD",
    "Tol light blue": "#77AADD", "Tol light cyan": "#99DDFF", "Tol light mint": "#44BB99",
    "Tol light pear": "#BBCC33", "Tol light olive": "#AAAA00", "Tol light yellow": "#EEDD88",
    "Tol light orange": "#EE8866", "Tol light pink": "#FFAABB",
    "Tol high-contrast blue": "#004488", "Tol high-contrast yellow": "#DDAA33", "Tol high-contrast red": "#BB5566",
}
# Candidates for classes: no greys (grey means "no class" / outside the pixel range in the figures) and nothing
# near black (the decision boundary is drawn in black over a white halo).
MIN_CHROMA = 12.0
MIN_LIGHTNESS = 20.0


def candidates(pool: dict[str, str] = SOURCE_POOL) -> dict[str, str]:
    """The colours of ``pool`` with CIELAB chroma > MIN_CHROMA and lightness >= MIN_LIGHTNESS."""
    lab = srgb_to_lab(hex_to_rgb(list(pool.values())))
    keep = (np.hypot(lab[:, 1], lab[:, 2]) > MIN_CHROMA) & (lab[:, 0] >= MIN_LIGHTNESS)
    return {n: h for (n, h), k in zip(pool.items(), keep) if k}


# The class palette: the 10-colour subset found by ``best_subset(candidates(), 10)`` (largest smallest pairwise
# CIEDE2000 over normal vision and the three simulated dichromacies), ordered by hand for classes 0-9.
# tests/test_figures.py checks that the search still returns exactly this set.
CLASS_PALETTE = [
    ("Okabe-Ito blue", "#0072B2"),
    ("Okabe-Ito yellow", "#F0E442"),
    ("Tol vibrant teal", "#009988"),
    ("Tol vibrant red", "#CC3311"),
    ("Okabe-Ito sky blue", "#56B4E9"),
    ("Tol muted wine", "#882255"),
    ("Tol muted olive", "#999933"),
    ("Tol light pink", "#FFAABB"),
    ("Tol muted indigo", "#332288"),
    ("Tol high-contrast red", "#BB5566"),
]
# Plotly's default qualitative palette ("D3"/"T10"), the app's class colours before issue 10
PLOTLY_DEFAULT = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf"]

# every pair of class colours must differ by more than this CIEDE2000 under normal vision and each simulation
# (about 4x the just-noticeable difference of ~2.3; checked by tests/test_figures.py)
THRESHOLD = 10.0


def class_hexes() -> list[str]:
    return [h for _, h in CLASS_PALETTE]


def markdown() -> str:
    """docs/palette.md, computed now from :data:`CLASS_PALETTE` and :data:`PLOTLY_DEFAULT`."""
    new, old = class_hexes(), PLOTLY_DEFAULT
    rep_new, rep_old = palette_report(new), palette_report(old)
    lines = [
        "# Class colours: a palette checked under simulated colour-vision deficiency",
        "",
        "Generated by `python scripts/palette_check.py` from `dashboard/figures/palette.py`; do not edit by hand",
        "(tests/test_figures.py fails when this file and the computation disagree).",
        "",
        "Every figure that colours classes (cross-sections, paths, probability bars, vulnerability, 3-D view) uses",
        "`dashboard.figures.common.class_color(k)`, which takes class k's colour from this palette (cycling after 10).",
        "",
        "How the check is computed: each colour is converted from sRGB to linear RGB, passed through the",
        "severity-1.0 matrices of Machado, Oliveira & Fernandes (2009) for deuteranopia, protanopia and tritanopia,",
        "converted back, and compared pair by pair with the CIEDE2000 colour difference (ΔE00, CIELAB under D65;",
        "about 2.3 is just noticeable). The palette was picked by `best_subset(candidates(), 10)` from the published",
        "Okabe-Ito and Paul Tol qualitative colours (greys and near-black left out: grey means \"outside the pixel",
        "range\" and the boundary is drawn in black): the 10 colours whose smallest ΔE00 over all four vision types is",
        f"largest. Required: every pair above ΔE00 = {THRESHOLD:g} under each vision type.",
        "",
        "## The palette",
        "",
        "| class | colour | hex | seen with deuteranopia | protanopia | tritanopia |",
        "|---|---|---|---|---|---|",
    ]
    sims = {v: rgb_to_hex(simulate(hex_to_rgb(new), v)) for v in VISIONS[1:]}
    for k, (name, h) in enumerate(CLASS_PALETTE):
        lines.append(f"| {k} | {name} | `{h}` | `{sims['deuteranopia'][k]}` | `{sims['protanopia'][k]}` | "
                     f"`{sims['tritanopia'][k]}` |")
    lines += ["", "## Smallest pairwise difference (ΔE00) per vision type", "",
              "| vision | this palette | its closest pair (classes) | Plotly default (before) | its closest pair |",
              "|---|---|---|---|---|"]
    for v in VISIONS:
        rn, ro = rep_new[v], rep_old[v]
        lines.append(f"| {v} | {rn['min_delta_e']:.2f} | {rn['pair'][0]} and {rn['pair'][1]} "
                     f"(seen as `{rn['seen_as'][0]}`, `{rn['seen_as'][1]}`) | {ro['min_delta_e']:.2f} | "
                     f"{ro['pair'][0]} and {ro['pair'][1]} (seen as `{ro['seen_as'][0]}`, `{ro['seen_as'][1]}`) |")
    worst_new = min(VISIONS, key=lambda v: rep_new[v]["min_delta_e"])
    worst_old = min(VISIONS, key=lambda v: rep_old[v]["min_delta_e"])
    d23 = pairwise_delta_e(old, "deuteranopia")[2, 3]
    s23 = rgb_to_hex(simulate(hex_to_rgb(old[2:4]), "deuteranopia"))
    ok = all(rep_new[v]["min_delta_e"] > THRESHOLD for v in VISIONS)
    lines += [
        "",
        f"Worst case of this palette: ΔE00 = {rep_new[worst_new]['min_delta_e']:.2f} ({worst_new}, classes "
        f"{rep_new[worst_new]['pair'][0]} and {rep_new[worst_new]['pair'][1]}) — "
        + ("above" if ok else "NOT above") + f" the required {THRESHOLD:g}.",
        "",
        f"The Plotly default palette used before falls to ΔE00 = {rep_old[worst_old]['min_delta_e']:.2f} "
        f"({worst_old}, classes {rep_old[worst_old]['pair'][0]} and {rep_old[worst_old]['pair'][1]}). Classes 2 "
        f"(`{old[2]}`) and 3 (`{old[3]}`) become `{s23[0]}` and `{s23[1]}` under deuteranopia (two olives, "
        f"ΔE00 = {d23:.2f}).",
        "",
    ]
    return "\n".join(lines)
