"""Geometry of deep image classifiers in their input space.

The library behind the app and the CLI: pure PyTorch/NumPy, never Streamlit or
Plotly. Start with :func:`load_classifier` and :func:`load_image`.
"""

from .classifier import Classifier, pick_device
from .errors import ConvergenceError, GeometryError, ImageError, ModelLoadError
from .images import ImageInput, gallery_batch, gallery_image, load_image
from .loading import load_classifier
from .zoo import DEFAULT_MODEL, zoo_names

__all__ = ["Classifier", "pick_device", "GeometryError", "ModelLoadError", "ImageError", "ConvergenceError",
           "ImageInput", "load_image", "gallery_image", "gallery_batch", "load_classifier", "DEFAULT_MODEL",
           "zoo_names"]
