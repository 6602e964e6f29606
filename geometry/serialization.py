"""Turn result fields (tensors, arrays, NumPy scalars, nested containers) into JSON-ready values.

Non-finite floats become ``None`` so the output is strict JSON. Imports numpy and torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def jsonable(v):
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist()) if v.dtype.kind == "f" else v.tolist()
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        v = v.item()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
