"""Errors the library raises for bad input.

Every message names the problem and what to do about it; the CLI prints it as
one line and the app shows it in a box. Imports nothing but the standard library.
"""


class GeometryError(ValueError):
    """A user-facing problem: bad file, shape, range, model or settings."""


class ModelLoadError(GeometryError):
    """A model file could not be turned into a classifier."""


class ImageError(GeometryError):
    """An image or array could not be turned into a model input."""


class ConvergenceError(GeometryError):
    """An analysis did not converge within its budget."""
