"""Geometry of deep image classifiers in their input space.

The library behind the app and the CLI: pure PyTorch/NumPy, never Streamlit or
Plotly. Start with :func:`load_classifier` and :func:`load_image`.

Importing it sets ``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set (before torch loads its
OpenMP runtime): idle OpenMP threads then sleep instead of spinning, which on a shared, loaded machine
made single-image work many times faster. ``OMP_WAIT_POLICY=ACTIVE`` in the environment restores spinning.
"""

import os as _os

_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede the first import of torch

from .classifier import Classifier, pick_device
from .errors import ConvergenceError, GeometryError, ImageError, ModelLoadError
from .images import ImageInput, gallery_batch, gallery_image, load_image
from .loading import load_classifier
from .zoo import DEFAULT_MODEL, zoo_names
from .boundary import BoundaryResult, boundary_point, deepfool
from .operators import (CurvatureOperator, HessianOperator, Operator, batched_hvp, curvature_operator, default_step,
                        hessian_operator, logit_difference_gradient)
from .lanczos import EigResult, full_spectrum, signed_eigs
from .curvature import SIGN_CONVENTION, CurvatureResult, principal_curvatures

__all__ = ["Classifier", "pick_device", "GeometryError", "ModelLoadError", "ImageError", "ConvergenceError",
           "ImageInput", "load_image", "gallery_image", "gallery_batch", "load_classifier", "DEFAULT_MODEL",
           "zoo_names", "BoundaryResult", "deepfool", "boundary_point", "Operator", "HessianOperator",
           "CurvatureOperator", "default_step", "logit_difference_gradient", "batched_hvp", "hessian_operator",
           "curvature_operator", "EigResult", "signed_eigs", "full_spectrum", "SIGN_CONVENTION", "CurvatureResult",
           "principal_curvatures"]
