"""Weight-derived Lipschitz bounds of logit differences, and bounds of the rounding error of a forward pass.

For a plain chain (``nn.Sequential``, nested or not) of known layers ending in a Linear
layer, :func:`margin_lipschitz_bound` returns ``pairwise[i, j]``, an upper bound of the
L2 Lipschitz constant of ``f_i - f_j`` on all of input space: the product of per-layer
operator norms (exact SVD for Linear, the Fourier bound of Sedghi, Gupta & Long 2019 for
Conv2d, exact bounds for pooling and normalisation, the activations' largest slopes)
times ``|w_i - w_j|`` of the last layer. These are the numbers of the exact, real-arithmetic
network the weights define.

A check that compares *computed* logits against such a bound must also bound how far the
computed logits can be from the exact ones. :class:`Chain` evaluates the chain layer by
layer and returns, with the logits, a rigorous bound of that distance for every point
(:meth:`Chain.tolerances`), under the standard model of floating-point arithmetic (every
operation rounds with relative error at most u = eps/2; a dot product of n terms, summed
in any order, FMA or not, is off by at most ``gamma_n * sum |w_k a_k|``, ``gamma_n = n u /
(1 - n u)``; Higham, *Accuracy and Stability of Numerical Algorithms*, section 3.1):

- an affine layer ``W a + b`` (Linear, Conv2d, average pooling) with fan-in n adds, per unit,
  at most ``(n + 1) * eps * (|W| |a| + |b|)`` (twice gamma: the slack covers the division by
  ``1 - n u``); in L2 this is at most ``(n + 1) * eps * (||W|| ||a|| + ||b||)``, with
  ``||W||`` the operator norm of the entrywise absolute weights (a convolution with |K|);
- an activation adds at most ``8 eps (|a| + |act(a)|)`` per unit (libm-class accuracy of
  erf / tanh / exp / log1p, a few ulps, with a factor of 2 or more to spare; Softplus also
  its switch to the identity above ``threshold``); ReLU, ReLU6, Hardtanh and max pooling
  round nothing; LeakyReLU and PReLU one product;
- ``Normalize`` ``(x - mean) / std`` two operations, BatchNorm (eval) the four of
  ``x * alpha + (b - mean * alpha)``;
- an error ``e`` already present at a layer's input is amplified by at most the layer's
  Lipschitz constant, so the bound at the last layer's input is
  ``E_{l+1} = Lip_l * E_l + r_l``; the last layer turns it into
  ``E * |w_i - w_j| + (n + 1) * eps * ((|w_i| + |w_j|) |a| + |b_i| + |b_j|)``.

Reduced-precision arithmetic is taken into account: a float32 Linear or Conv2d that PyTorch
is allowed to run in TF32 (10 mantissa bits; cuDNN convolutions default to it) or bfloat16
(``torch.set_float32_matmul_precision("medium")``) is given that format's eps. Not covered:
convolution algorithms with other error models (Winograd, FFT), which PyTorch does not
select for these layers by default.

The chain also keeps a float64 copy of itself (:meth:`Chain.forward` with ``precise=True``)
so that a check can re-evaluate points where float32 rounding is too coarse to decide.

Imports torch and numpy only.
"""

from __future__ import annotations

import copy
import math
import threading
import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .classifier import Classifier, Normalize

# Largest slope of each elementwise activation (checked numerically in tests/test_paths.py; GELU's 1.1290 also
# bounds its tanh approximation, whose largest slope is 1.128993).
ACTIVATION_SLOPES = {nn.ReLU: 1.0, nn.ReLU6: 1.0, nn.Hardtanh: 1.0, nn.Tanh: 1.0, nn.Softplus: 1.0,
                     nn.Sigmoid: 0.25, nn.GELU: 1.1290, nn.SiLU: 1.0999, nn.Mish: 1.0886}
_IDENTITY = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Flatten)
_EXACT_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh)  # comparisons and selections: no rounding
ACTIVATION_ROUNDING = 8.0  # per unit: ACTIVATION_ROUNDING * eps * (|a| + |act(a)|) for transcendental activations


def unwrap(module: nn.Module) -> nn.Module:
    """Strip transparent wrappers (modules with ``_transparent = True`` and an ``inner`` module)."""
    while getattr(module, "_transparent", False) and hasattr(module, "inner"):
        module = module.inner
    return module


def _leaves(module: nn.Module) -> list[nn.Module] | None:
    module = unwrap(module)
    if type(module) is nn.Sequential:
        out = []
        for m in module:
            sub = _leaves(m)
            if sub is None:
                return None
            out += sub
        return out
    if len(list(module.children())) and not isinstance(module, (nn.Conv2d, nn.Linear)):
        return None  # a container with its own forward (e.g. residual blocks): not a chain
    return [module]


def _padded_grid(conv: nn.Conv2d, in_shape) -> tuple[int, int, int, int, int, int] | None:
    kh, kw = conv.kernel_size
    dh, dw = conv.dilation
    kh_e, kw_e = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    H, Wd = int(in_shape[-2]), int(in_shape[-1])
    if isinstance(conv.padding, str):
        ph, pw = (0, 0) if conv.padding == "valid" else (kh_e, kw_e)
    else:
        ph, pw = conv.padding
    return max(H + 2 * ph, kh_e), max(Wd + 2 * pw, kw_e), kh_e, kw_e, dh, dw


def _conv_norm(conv: nn.Conv2d, in_shape, weight: torch.Tensor | None = None) -> float:
    """Upper bound of the operator norm of a zero-padded 2-D convolution (of ``weight``, default the
    layer's own kernel; pass ``|K|`` for the rounding bound).

    Zero padding then cropping embeds the map in a circular convolution on an N x N grid
    (N >= padded size) whose norm is the largest singular value of the kernel's Fourier
    transform over all frequencies (Sedghi, Gupta & Long 2019); stride only drops outputs."""
    if conv.padding_mode != "zeros":
        return float("nan")
    W = (conv.weight if weight is None else weight).detach().to(torch.float64).cpu()
    co, cig = W.shape[:2]
    nh, nw, kh_e, kw_e, dh, dw = _padded_grid(conv, in_shape)
    g = conv.groups
    best = 0.0
    for gi in range(g):
        Wg = W[gi * (co // g):(gi + 1) * (co // g)]
        K = torch.zeros(co // g, cig, nh, nw, dtype=torch.float64)
        K[:, :, 0:kh_e:dh, 0:kw_e:dw] = Wg
        Khat = torch.fft.fft2(K)  # (co, ci, nh, nw)
        mats = Khat.permute(2, 3, 0, 1).reshape(nh * nw, co // g, cig)
        best = max(best, float(torch.linalg.matrix_norm(mats, ord=2).max()))
    return best


def _pool_norm(m, in_shape) -> float:
    """Operator-norm bound of 2-D max / average pooling (nan when we cannot bound it)."""
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    ks = pair(m.kernel_size)
    st = tuple(s if s else k for s, k in zip(pair(m.stride or m.kernel_size), ks))
    pad = pair(m.padding)
    # c: the most windows one input can fall in
    c = math.ceil(ks[0] / st[0]) * math.ceil(ks[1] / st[1])
    if isinstance(m, nn.MaxPool2d):
        if pair(m.dilation) != (1, 1):
            return float("nan")
        # |max(x_w) - max(y_w)| <= max_w |x - y|, and each input meets at most c windows
        return math.sqrt(c)
    if m.divisor_override or m.ceil_mode or (pad != (0, 0) and not m.count_include_pad):
        return float("nan")
    # rows hold at most k_h k_w entries 1/(k_h k_w), columns at most c: |A| <= sqrt(|A|_1 |A|_inf)
    return math.sqrt(c / (ks[0] * ks[1]))


# ------------------------------------------------------------------ reduced precision
def _precision_settings(device: torch.device, conv: bool) -> list[str]:
    """PyTorch's float32 precision switches that apply to a Linear (conv=False) or Conv2d on ``device``."""
    b = torch.backends
    names = [getattr(b, "fp32_precision", "none")]
    if device.type == "cuda":
        if conv:
            names += [getattr(b.cudnn, "fp32_precision", "none"),
                      getattr(getattr(b.cudnn, "conv", None), "fp32_precision", "none"),
                      "tf32" if getattr(b.cudnn, "allow_tf32", False) else "ieee"]
        else:
            names += [getattr(b.cuda.matmul, "fp32_precision", "none"),
                      "tf32" if getattr(b.cuda.matmul, "allow_tf32", False) else "ieee"]
    else:
        mk = getattr(b, "mkldnn", None)
        names += [getattr(mk, "fp32_precision", "none"),
                  getattr(getattr(mk, "conv" if conv else "matmul", None), "fp32_precision", "none")]
    names.append({"high": "tf32", "medium": "bf16"}.get(torch.get_float32_matmul_precision(), "ieee"))
    return [str(n).lower() for n in names]


def affine_eps(device: torch.device, dtype: torch.dtype, conv: bool) -> float:
    """eps of the arithmetic a Linear (``conv=False``) or Conv2d layer really uses: the dtype's, or
    TF32's ``2**-10`` / bfloat16's ``2**-7`` when PyTorch may run float32 products in those formats."""
    eps = float(torch.finfo(dtype).eps)
    if dtype != torch.float32:
        return eps
    s = _precision_settings(device, conv)
    if "bf16" in s:
        return max(eps, 2.0 ** -7)
    if "tf32" in s:
        return max(eps, 2.0 ** -10)
    return eps


# ------------------------------------------------------------------ the chain
@dataclass
class LayerSpec:
    """Per-layer constants of a chain: ``kind`` ("affine" | "activation" | "exact" | "normalize" |
    "batchnorm" | "skip"), Lipschitz bound ``lip``, and what the rounding bound needs: ``abs_norm``
    (operator norm of |W|), ``bias_norm`` (L2 norm of |b| over all output units), ``ops`` (fan-in + 1),
    ``matmul`` (None, "linear" or "conv": whose reduced-precision switches apply), ``extra`` (absolute
    per-point term)."""

    name: str
    kind: str
    lip: float
    abs_norm: float = 0.0
    bias_norm: float = 0.0
    ops: int = 0
    matmul: str | None = None
    extra: float = 0.0
    scale: float = 0.0


@dataclass
class Chain:
    """A plain chain of known layers, evaluated layer by layer with a bound of its rounding error."""

    leaves: list
    last: int
    specs: list
    W: np.ndarray  # last layer's weight (L, h), float64
    b: np.ndarray  # last layer's bias (L,), float64
    module: nn.Module = field(repr=False, default=None)
    _precise: list | None = field(default=None, repr=False)

    def __post_init__(self):
        self._lock = threading.Lock()
        self.row_norms = np.linalg.norm(self.W, axis=1)
        self.pair_norms = np.linalg.norm(self.W[:, None, :] - self.W[None, :, :], axis=2)
        self.ops_last = self.W.shape[1] + 1

    def __getstate__(self):  # picklable (worker processes): no lock, no float64 copy
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state["_precise"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def precise_leaves(self, device: torch.device) -> list:
        """The chain's layers as a float64 copy (made once, on first use)."""
        with self._lock:
            if self._precise is None:
                self._precise = [copy.deepcopy(m).to(device=device, dtype=torch.float64) for m in self.leaves]
            return self._precise

    def forward(self, x: torch.Tensor, precise: bool = False):
        """Logits ``(n, L)`` (float64 tensor), the bound ``E`` ``(n,)`` of the L2 error at the last layer's
        input, the norm ``A`` ``(n,)`` of that input, and the eps of the last layer's arithmetic.

        ``precise``: evaluate the float64 copy (the points are converted exactly)."""
        leaves = self.precise_leaves(x.device) if precise else self.leaves
        if precise:
            x = x.to(torch.float64)
        dtype, device = x.dtype, x.device
        eps = float(torch.finfo(dtype).eps)
        n = x.shape[0]

        def norm(t):
            # L2 norms per point in the activations' own dtype (no float64 copy of big activations), enlarged
            # by the relative error of the computation itself (a sum of m squares and a square root)
            flat = t.reshape(n, -1)
            return flat.norm(dim=1).double() * (1 + (flat.shape[1] + 2) * eps)

        E = torch.zeros(n, dtype=torch.float64, device=device)
        a = x
        with torch.no_grad():
            for spec, leaf in zip(self.specs, leaves[:self.last]):
                if spec.kind == "skip":
                    a = leaf(a)
                    continue
                an = norm(a)
                y = leaf(a)
                if spec.kind == "affine":
                    e = affine_eps(device, dtype, spec.matmul == "conv") if spec.matmul else eps
                    if spec.ops * e >= 0.5:
                        r = torch.full_like(an, float("inf"))
                    else:
                        r = spec.ops * e * (spec.abs_norm * an + spec.bias_norm)
                elif spec.kind == "activation":
                    r = spec.scale * eps * (an + norm(y)) + spec.extra
                elif spec.kind == "normalize":
                    r = 3 * eps * norm(y)
                elif spec.kind == "batchnorm":
                    r = 4 * eps * (spec.abs_norm * an + spec.bias_norm)
                else:  # exact
                    r = torch.zeros_like(an)
                E = spec.lip * E + r
                a = y
            A = norm(a)
            out = leaves[self.last](a)
            for leaf in leaves[self.last + 1:]:
                out = leaf(out)
        return out.double(), E, A, affine_eps(device, dtype, False)

    def tolerances(self, labels: np.ndarray, E: np.ndarray, A: np.ndarray, eps_last: float) -> np.ndarray:
        """``(n, L)``: a bound of |computed - exact| of ``f_i - f_j`` at each point, ``i = labels``."""
        i = np.asarray(labels, dtype=np.int64)
        absb = np.abs(self.b)
        t = (E[:, None] * self.pair_norms[i]
             + self.ops_last * eps_last * ((self.row_norms[i][:, None] + self.row_norms[None, :]) * A[:, None]
                                           + absb[i][:, None] + absb[None, :]))
        if self.ops_last * eps_last >= 0.5:
            t = np.full_like(t, np.inf)
        return t


@dataclass
class LipschitzBound:
    """``pairwise[i, j]`` bounds the L2 Lipschitz constant of ``f_i - f_j`` on all of input space;
    ``chain`` evaluates the model with a bound of its rounding error."""

    pairwise: np.ndarray
    layers: list[tuple[str, float]]
    chain: Chain | None = field(default=None, repr=False)

    @property
    def max(self) -> float:
        return float(self.pairwise.max())


_bound_cache: "weakref.WeakKeyDictionary[nn.Module, object]" = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()


def margin_lipschitz_bound(clf: Classifier) -> LipschitzBound | None:
    """Weight-derived upper bounds of the L2 Lipschitz constants of all logit differences.

    Returns None when the module is not a plain chain (``nn.Sequential``) of layers whose
    norm we can bound (Linear, Conv2d, pooling, BatchNorm in eval mode, our Normalize,
    elementwise activations, Flatten/Dropout/Identity) ending in a Linear layer. The
    product of per-layer bounds is an upper bound (usually loose by a factor of tens on
    trained CNNs, which only costs more samples). Cached per module."""
    module = unwrap(clf.module)
    with _cache_lock:
        if module in _bound_cache:
            return _bound_cache[module]  # type: ignore[return-value]
    result = _compute_bound(clf, module)
    with _cache_lock:
        _bound_cache[module] = result
    return result


def _activation_spec(m: nn.Module, out_numel: int) -> LayerSpec | None:
    name = type(m).__name__
    if isinstance(m, _EXACT_ACTIVATIONS):
        return LayerSpec(name, "exact", ACTIVATION_SLOPES.get(type(m), 1.0))
    if isinstance(m, nn.LeakyReLU):
        return LayerSpec(name, "activation", max(1.0, abs(float(m.negative_slope))), scale=1.0)
    if isinstance(m, nn.PReLU):
        return LayerSpec(name, "activation", max(1.0, float(m.weight.detach().abs().max())), scale=1.0)
    if isinstance(m, nn.ELU):
        return LayerSpec(name, "activation", max(1.0, float(m.alpha)), scale=ACTIVATION_ROUNDING)
    if isinstance(m, nn.Softplus):
        # above threshold/beta torch returns x itself: off from log(1 + e^(beta x))/beta by <= e^-threshold/beta
        jump = math.exp(-float(m.threshold)) / float(m.beta)
        return LayerSpec(name, "activation", 1.0, scale=ACTIVATION_ROUNDING, extra=jump * math.sqrt(out_numel))
    if type(m) in ACTIVATION_SLOPES:
        return LayerSpec(name, "activation", ACTIVATION_SLOPES[type(m)], scale=ACTIVATION_ROUNDING)
    return None


def _compute_bound(clf: Classifier, module: nn.Module) -> LipschitzBound | None:
    leaves = _leaves(module)
    if not leaves:
        return None
    last = None
    for idx in range(len(leaves) - 1, -1, -1):
        if isinstance(leaves[idx], nn.Linear):
            last = idx
            break
        if not isinstance(leaves[idx], _IDENTITY):
            return None
    if last is None:
        return None
    shapes: dict[int, tuple] = {}
    outs: dict[int, tuple] = {}

    def hook(mod, inp, out, i):
        shapes[i] = tuple(inp[0].shape[1:])
        outs[i] = tuple(out.shape[1:])

    hooks = [m.register_forward_hook(lambda mod, inp, out, i=i: hook(mod, inp, out, i)) for i, m in enumerate(leaves)]
    try:
        with torch.no_grad():
            lo, hi = clf.pixel_range
            module(torch.full((1, *clf.input_shape), (lo + hi) / 2, device=clf.device, dtype=clf.dtype))
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    product, layers, specs = 1.0, [], []
    for i, m in enumerate(leaves[:last]):
        out_numel = int(np.prod(outs.get(i, (0,)))) if i in outs else 0
        spatial = int(np.prod(outs[i][1:])) if i in outs and len(outs[i]) > 1 else 1
        if isinstance(m, _IDENTITY):
            specs.append(LayerSpec(type(m).__name__, "skip", 1.0))
            continue
        if isinstance(m, nn.Linear):
            W = m.weight.detach().double().cpu()
            s = float(torch.linalg.matrix_norm(W, ord=2))
            bias = 0.0 if m.bias is None else float(m.bias.detach().double().norm())
            spec = LayerSpec("Linear", "affine", s, float(torch.linalg.matrix_norm(W.abs(), ord=2)),
                             bias * math.sqrt(out_numel // max(1, m.out_features)), m.in_features + 1, "linear")
        elif isinstance(m, nn.Conv2d):
            s = _conv_norm(m, shapes.get(i, ()))
            bias = 0.0 if m.bias is None else float(m.bias.detach().double().norm())
            kh, kw = m.kernel_size
            spec = LayerSpec("Conv2d", "affine", s, _conv_norm(m, shapes.get(i, ()), m.weight.abs()),
                             bias * math.sqrt(spatial), (m.in_channels // m.groups) * kh * kw + 1, "conv")
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            s = _pool_norm(m, shapes.get(i, ()))
            if isinstance(m, nn.MaxPool2d):
                spec = LayerSpec("MaxPool2d", "exact", s)
            else:
                ks = m.kernel_size if isinstance(m.kernel_size, (tuple, list)) else (m.kernel_size, m.kernel_size)
                spec = LayerSpec("AvgPool2d", "affine", s, s, 0.0, int(ks[0] * ks[1]) + 1, None)
        elif isinstance(m, Normalize):
            s = float((1.0 / m.std.detach().double().abs()).max())
            spec = LayerSpec("Normalize", "normalize", s)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.running_var is not None:
            w = (m.weight.detach() if m.weight is not None else torch.ones_like(m.running_var)).double()
            alpha = w / torch.sqrt(m.running_var.double() + m.eps)
            s = float(alpha.abs().max())
            beta = (m.bias.detach().double() if m.bias is not None else torch.zeros_like(alpha)).abs()
            per_channel = (m.running_mean.double() * alpha).abs() + beta
            spec = LayerSpec(type(m).__name__, "batchnorm", s, s, float(per_channel.norm()) * math.sqrt(spatial))
        else:
            spec = _activation_spec(m, out_numel)
            if spec is None:
                return None
            s = spec.lip
        if not math.isfinite(s) or not math.isfinite(spec.abs_norm):
            return None
        product *= s
        layers.append((type(m).__name__, s))
        specs.append(spec)
    W = leaves[last].weight.detach().double().cpu()
    b = leaves[last].bias.detach().double().cpu() if leaves[last].bias is not None else torch.zeros(W.shape[0],
                                                                                                   dtype=torch.float64)
    pairwise = (W[:, None, :] - W[None, :, :]).norm(dim=2).numpy() * product
    layers.append(("Linear (|w_i - w_j|, largest)", float(pairwise.max() / product) if product else 0.0))
    chain = Chain(leaves, last, specs, W.numpy(), b.numpy(), module)
    return LipschitzBound(pairwise, layers, chain)
