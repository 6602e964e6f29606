"""Boundary points: batched L2 DeepFool and bisection onto the decision boundary.

:func:`deepfool` (Moosavi-Dezfooli et al. 2016) moves every image of a batch at
once towards its nearest linearised boundary among the top ``candidates`` classes
of its initial logits; :func:`boundary_point` runs it without overshoot and then
brackets the crossing on the segment x -> x + r until ``|f_k - f_j| <= tol``, so the
point lies *on* the boundary (docs/science.md section 2).

Conventions (ours where the paper is silent; tested in tests/test_boundary.py):

- Overshoot multiplies the accumulated perturbation: the iterate is
  ``x + (1 + overshoot) * r_tot`` (as in the original DeepFool code); each linear
  step also adds :data:`STEP_NUDGE` to the ratio so it lands just past the
  linearised boundary. ``overshoot=0.02`` is the attack default; geometry uses 0.
- Pixel range (``clip=True``): coordinates sitting on a bound whose step would
  leave the range are frozen (the linear step is solved in the remaining free
  coordinates), and the iterate is clamped to the range. ``clipped`` records per
  image whether the pixel range changed any step, because it changes the geometry.
- Targeted (``target=t``): each step pushes towards class t against the class that
  currently wins, until t wins; the boundary is then between t and the previous
  winner (``label`` is still k(x), ``boundary_label`` is t).
- Images that do not reach the other side within ``max_iter`` (or whose gradients
  vanish) come back with ``converged=False``, never silently.

Gradients of all candidate logit differences for all active images come from one
backward pass (``torch.func.vjp`` vmapped over the candidates; a replicated-batch
backward for modules that refuse ``torch.func``). Imports torch only.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import torch

from .classifier import Classifier
from .errors import GeometryError

STEP_NUDGE = 1e-4  # added to |f| / |w| in each linear step, as in the original DeepFool
ATTACK_OVERSHOOT = 0.02
DEFAULT_CANDIDATES = 10
BOUNDARY_TOL = 1e-4
BISECTION_ITER = 60

_vjp_ok: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # module -> torch.func works on it


@dataclass
class BoundaryResult:
    """Boundary (or adversarial) points of a batch; every tensor has the batch as its first axis."""

    x: torch.Tensor
    point: torch.Tensor
    perturbation: torch.Tensor
    label: torch.Tensor
    boundary_label: torch.Tensor
    iterations: torch.Tensor
    converged: torch.Tensor
    residual: torch.Tensor
    clipped: torch.Tensor
    params: dict = field(default_factory=dict)
    near_label: torch.Tensor | None = None  # class on the near side of the boundary; None means ``label``

    @property
    def side_label(self) -> torch.Tensor:
        """``(B,)`` class on the near side of the boundary: ``label`` except for targeted runs, where it is
        the class the target had to beat last. The boundary lies between ``side_label`` and ``boundary_label``."""
        return self.label if self.near_label is None else self.near_label

    def norms(self) -> torch.Tensor:
        """L2 norm of each perturbation, ``(B,)``."""
        return self.perturbation.reshape(len(self), -1).norm(dim=1)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, i) -> "BoundaryResult":
        if isinstance(i, int):
            i = slice(i, i + 1 if i != -1 else None)
        pick = lambda t: t[i]  # noqa: E731
        return BoundaryResult(pick(self.x), pick(self.point), pick(self.perturbation), pick(self.label),
                              pick(self.boundary_label), pick(self.iterations), pick(self.converged),
                              pick(self.residual), pick(self.clipped), dict(self.params),
                              None if self.near_label is None else pick(self.near_label))

    def to_dict(self) -> dict:
        """Plain per-image lists (JSON-ready), without the images."""
        return {"label": self.label.tolist(), "boundary_label": self.boundary_label.tolist(),
                "perturbation_norm": self.norms().tolist(), "residual": self.residual.tolist(),
                "iterations": self.iterations.tolist(), "converged": self.converged.tolist(),
                "clipped": self.clipped.tolist()}


def _targets(target, B: int, clf: Classifier) -> torch.Tensor | None:
    if target is None:
        return None
    t = torch.as_tensor(target, device=clf.device).reshape(-1).long()
    if t.numel() == 1:
        t = t.expand(B).clone()
    if t.numel() != B:
        raise GeometryError(f"target must be one class or one per image ({B}), got {t.numel()} values")
    if int(t.min()) < 0 or int(t.max()) >= clf.num_classes:
        raise GeometryError(f"target class must be in 0..{clf.num_classes - 1}, got {t.tolist()}")
    return t


def _check_options(candidates, overshoot, max_iter, clf):
    if not isinstance(candidates, int) or candidates < 2:
        raise GeometryError(f"candidates must be an integer >= 2 (the label plus at least one other class), got "
                            f"{candidates!r}")
    if not overshoot >= 0:
        raise GeometryError(f"overshoot must be >= 0, got {overshoot}")
    if not isinstance(max_iter, int) or max_iter < 1:
        raise GeometryError(f"max_iter must be a positive integer, got {max_iter!r}")
    return min(candidates, clf.num_classes)


def candidate_gradients(clf: Classifier, p: torch.Tensor, classes: torch.Tensor):
    """Logits ``(B, L)`` at ``p`` and gradients ``(B, C, *shape)`` of ``f_{classes[b, c]}`` at ``p[b]``.

    One forward and one (vmapped) backward for all images and candidates."""
    B, C = classes.shape
    key = clf.module
    if _vjp_ok.get(key, True):
        try:
            logits, vjp_fn = torch.func.vjp(clf.module, p)
            cot = torch.zeros(C, B, logits.shape[1], dtype=logits.dtype, device=logits.device)
            cot.scatter_(2, classes.T.unsqueeze(2), 1.0)
            (g,) = torch.func.vmap(vjp_fn)(cot)
            _vjp_ok[key] = True
            return logits.detach(), g.transpose(0, 1).detach()
        except Exception:
            if _vjp_ok.get(key):
                raise
            _vjp_ok[key] = False
    shape = p.shape[1:]
    with torch.enable_grad():
        pr = p.detach().unsqueeze(1).expand(B, C, *shape).reshape(B * C, *shape).clone().requires_grad_(True)
        out = clf.module(pr)
        sel = out.gather(1, classes.reshape(-1, 1)).sum()
        (g,) = torch.autograd.grad(sel, pr)
    return out.detach().reshape(B, C, -1)[:, 0], g.reshape(B, C, *shape)


def _free_mask(p_flat, w_flat, lo, hi, eps):
    """Coordinates that may move along +w: not sitting on a bound that +w would cross."""
    at_lo = p_flat <= lo + eps
    at_hi = p_flat >= hi - eps
    return ~((at_lo & (w_flat < 0)) | (at_hi & (w_flat > 0)))


def deepfool(clf: Classifier, x, *, candidates: int = DEFAULT_CANDIDATES, overshoot: float = ATTACK_OVERSHOOT,
             max_iter: int = 50, target=None, clip: bool = True) -> BoundaryResult:
    """L2 DeepFool on a batch (or one image); all images advance together.

    Parameters
    ----------
    x : ``(B, *shape)`` or one image ``shape``, in pixel space.
    candidates : classes considered per image: the top ``candidates`` of its initial logits (label included).
    overshoot : the iterate is ``x + (1 + overshoot) * r``; 0.02 as an attack, 0 for geometry.
    max_iter : iteration budget per image.
    target : None (untargeted), a class, or ``(B,)`` classes: push each image *into* that class.
    clip : keep iterates in ``clf.pixel_range`` (recorded in ``clipped``).

    Returns a :class:`BoundaryResult`; ``point`` is the first iterate on the other side
    (label != k, or label == target) and ``boundary_label`` its label."""
    x = clf.as_batch(x).detach()
    C = _check_options(candidates, overshoot, max_iter, clf)
    B, shape = x.shape[0], x.shape[1:]
    dev = x.device
    tgt = _targets(target, B, clf)
    lo, hi = clf.pixel_range
    eps = 1e-6 * clf.pixel_span
    logits0 = clf.logits(x)
    label = logits0.argmax(1)
    if tgt is None:
        cand = logits0.topk(C, dim=1).indices  # cand[:, 0] == label
    r_tot = torch.zeros_like(x)
    point = x.clone()
    iterations = torch.zeros(B, dtype=torch.long, device=dev)
    clipped = torch.zeros(B, dtype=torch.bool, device=dev)
    stuck = torch.zeros(B, dtype=torch.bool, device=dev)
    current = label.clone()
    done = (current == tgt) if tgt is not None else torch.zeros(B, dtype=torch.bool, device=dev)
    for _ in range(max_iter):
        active = (~done & ~stuck).nonzero().flatten()
        if active.numel() == 0:
            break
        p = point[active]
        if tgt is None:
            classes = cand[active]
        else:  # push towards the target against the class that wins now
            classes = torch.stack([current[active], tgt[active]], dim=1)
        logits, grads = candidate_gradients(clf, p, classes)
        f = logits.gather(1, classes)  # (A, C)
        w = (grads - grads[:, :1]).reshape(len(active), classes.shape[1], -1)[:, 1:]  # (A, C-1, d)
        fd = (f[:, 1:] - f[:, :1]).abs()  # distance in logits to each candidate boundary
        if clip:
            free = _free_mask(p.reshape(len(active), 1, -1), w, lo, hi, eps)
            w_eff = w * free
        else:
            w_eff = w
        wn = w_eff.norm(dim=2)  # (A, C-1)
        dist = fd / wn.clamp_min(1e-30)
        dist = torch.where(wn > 1e-20, dist, torch.full_like(dist, float("inf")))
        best = dist.argmin(1)
        bd = dist.gather(1, best[:, None])[:, 0]
        ok = torch.isfinite(bd)
        stuck[active[~ok]] = True
        wb = w_eff[torch.arange(len(active), device=dev), best]  # (A, d)
        if clip:
            clipped[active] |= (w_eff[torch.arange(len(active), device=dev), best] !=
                                w[torch.arange(len(active), device=dev), best]).any(1)
        r = ((bd + STEP_NUDGE) / wn.gather(1, best[:, None])[:, 0].clamp_min(1e-30))[:, None] * wb
        r = torch.where(ok[:, None], r, torch.zeros_like(r))
        r_tot[active] = r_tot[active] + r.reshape(len(active), *shape)
        new = x[active] + (1 + overshoot) * r_tot[active]
        if clip:
            cl = new.clamp(lo, hi)
            clipped[active] |= (cl != new).reshape(len(active), -1).any(1)
            new = cl
            # keep r_tot equal to what was applied, so later steps start from the real iterate
            r_tot[active] = (new - x[active]) / (1 + overshoot)
        point[active] = new
        iterations[active[ok]] += 1
        current[active] = clf.logits(new).argmax(1)
        done = (current == tgt) if tgt is not None else (current != label)
    logits_end = clf.logits(point)
    if tgt is not None:
        j = tgt.clone()
    else:  # the winner across (or, if the label never changed, the runner-up: the closest contender)
        j = logits_end.scatter(1, label[:, None], float("-inf")).argmax(1)
    if tgt is not None:  # boundary between the target and the strongest other class
        others = logits_end.clone()
        others.scatter_(1, tgt[:, None], float("-inf"))
        k_side = others.argmax(1)
        residual = (logits_end.gather(1, tgt[:, None]) - logits_end.gather(1, k_side[:, None]))[:, 0].abs()
        residual = torch.where(label == tgt, torch.zeros_like(residual), residual)
    else:
        residual = (logits_end.gather(1, label[:, None]) - logits_end.gather(1, j[:, None]))[:, 0].abs()
    params = {"candidates": C, "overshoot": float(overshoot), "max_iter": int(max_iter),
              "target": None if tgt is None else tgt.tolist(), "clip": bool(clip), "method": "deepfool",
              "step_nudge": STEP_NUDGE}
    near = None if tgt is None else torch.where(label == tgt, tgt, k_side)
    return BoundaryResult(x, point, point - x, label, j, iterations, done.clone(), residual, clipped, params, near)


def boundary_point(clf: Classifier, x, *, candidates: int = DEFAULT_CANDIDATES, tol: float = BOUNDARY_TOL,
                   max_iter: int = 50, target=None, clip: bool = True) -> BoundaryResult:
    """A point *on* the decision boundary near each image.

    DeepFool without overshoot gives ``x + r`` just across; the crossing on the
    segment ``x -> x + r`` is then bracketed (safeguarded secant/bisection, all images
    together, forward passes only) until ``|f_k - f_j| <= tol`` (logit units), where k
    is the winning class on the near side and j on the far side. For an untargeted
    run k = k(x); for a targeted run j = target. ``residual`` is ``|f_k - f_j|`` at the
    point; images that DeepFool could not move across, or whose bracket did not
    shrink to ``tol`` within :data:`BISECTION_ITER` steps, have ``converged=False``."""
    if not tol > 0:
        raise GeometryError(f"tol must be positive, got {tol}")
    df = deepfool(clf, x, candidates=candidates, overshoot=0.0, max_iter=max_iter, target=target, clip=clip)
    x, r = df.x, df.perturbation
    B = len(df)
    dev, dt = x.device, x.dtype
    tgt = _targets(target, B, clf)
    trivial = (df.label == tgt) if tgt is not None else torch.zeros(B, dtype=torch.bool, device=dev)
    expand = lambda t: t.reshape(-1, *([1] * (x.dim() - 1)))  # noqa: E731

    def side(logits, idx):
        """True on the far side (target wins / label lost) for images ``idx``."""
        top = logits.argmax(1)
        return (top == tgt[idx]) if tgt is not None else (top != df.label[idx])

    def pair(logits_far, logits, idx):
        """(near class, far class) of the crossing for images ``idx``, F = f_near - f_far at ``logits``."""
        far = logits_far.argmax(1)
        if tgt is None:
            near = df.label[idx]
        else:
            o = logits_far.clone()
            o.scatter_(1, tgt[idx][:, None], float("-inf"))
            near = o.argmax(1)
        F = logits.gather(1, near[:, None])[:, 0] - logits.gather(1, far[:, None])[:, 0]
        return near, far, F

    t_lo = torch.zeros(B, dtype=dt, device=dev)
    t_hi = torch.ones(B, dtype=dt, device=dev)
    L_lo, L_hi = clf.logits(x), clf.logits(df.point)
    crossed = side(L_hi, slice(None)) & ~trivial & df.converged
    best_t = t_hi.clone()
    best_res = torch.full((B,), float("inf"), dtype=dt, device=dev)
    near, far, _ = pair(L_hi, L_hi, slice(None))
    best_near, best_far = near.clone(), far.clone()
    conv = torch.zeros(B, dtype=torch.bool, device=dev)
    for it in range(BISECTION_ITER):
        act = (crossed & ~conv).nonzero().flatten()
        if act.numel() == 0:
            break
        near_a, far_a, F_hi = pair(L_hi[act], L_hi[act], act)
        F_lo = L_lo[act].gather(1, near_a[:, None])[:, 0] - L_lo[act].gather(1, far_a[:, None])[:, 0]
        width = t_hi[act] - t_lo[act]
        denom = F_lo - F_hi
        frac = torch.where(denom > 0, F_lo / denom.clamp_min(1e-30), torch.full_like(denom, 0.5))
        # safeguard: keep the trial inside the bracket, and bisect every third step
        frac = frac.clamp(1e-3, 1 - 1e-3) if it % 3 != 2 else torch.full_like(frac, 0.5)
        t_m = t_lo[act] + frac * width
        pts = x[act] + expand(t_m) * r[act]
        Lm = clf.logits(pts)
        far_side = side(Lm, act)
        nm, fm, Fm = pair(torch.where(far_side[:, None], Lm, L_hi[act]), Lm, act)
        res = Fm.abs()
        # the crossing pair at the trial point: near class wins or far class wins, nothing else
        top = Lm.argmax(1)
        on_pair = (top == nm) | (top == fm)
        better = on_pair & (res < best_res[act])
        best_t[act[better]] = t_m[better]
        best_res[act[better]] = res[better]
        best_near[act[better]], best_far[act[better]] = nm[better], fm[better]
        conv[act] |= on_pair & (res <= tol)
        up = act[far_side]
        t_hi[up] = t_m[far_side]
        L_hi[up] = Lm[far_side]
        dn = act[~far_side]
        t_lo[dn] = t_m[~far_side]
        L_lo[dn] = Lm[~far_side]
    point = torch.where(expand(crossed), x + expand(best_t) * r, df.point)
    point = torch.where(expand(trivial), x, point)
    L = clf.logits(point)
    near = torch.where(crossed, best_near, df.side_label)
    far = torch.where(crossed, best_far, df.boundary_label)
    residual = (L.gather(1, near[:, None])[:, 0] - L.gather(1, far[:, None])[:, 0]).abs()
    residual = torch.where(trivial, torch.zeros_like(residual), residual)
    converged = (conv & (residual <= tol)) | trivial
    boundary_label = far if tgt is None else tgt
    params = dict(df.params, overshoot=0.0, tol=float(tol), method="boundary_point",
                  deepfool_converged=df.converged.tolist())
    near_label = None if tgt is None else torch.where(trivial, tgt, near)
    return BoundaryResult(x, point, point - x, df.label, boundary_label, df.iterations, converged, residual,
                          df.clipped, params, near_label)
