"""The size limits every model and image is checked against before anything is allocated.

Each limit has a default, an environment variable that raises (or lowers) it for a
whole process, and, for two of them, a CLI option that overrides both for one command:

- input elements: elements of one model input (C*H*W), checked from the input shape
  before anything is built; default 786,432 = 3*512*512;
  ``--max-input-elements`` / BOUNDARY_GEOMETRY_MAX_INPUT_ELEMENTS.
- parameters: tensor elements stored in a model file (from its header or archive, before
  loading) and parameters of the architecture a state dict is loaded into (counted on the
  ``meta`` device, before building it); default 100,000,000;
  ``--max-parameters`` / BOUNDARY_GEOMETRY_MAX_PARAMETERS.
- image pixels: width * height of a PNG/JPEG, read from its header before decoding;
  default 40,000,000; BOUNDARY_GEOMETRY_MAX_IMAGE_PIXELS.
- model file bytes: size of a model file (and what a zip archive unpacks to);
  default 512 MiB; BOUNDARY_GEOMETRY_MAX_MODEL_BYTES.
- image file bytes: size of an image or .npy file; default 20 MiB;
  BOUNDARY_GEOMETRY_MAX_IMAGE_BYTES.

A bad value in an environment variable is an error naming the variable, never silently ignored.
Imports only the standard library.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from .errors import GeometryError, ModelLoadError


@dataclass(frozen=True)
class Limit:
    """One limit: its name in messages, its default and the environment variable that changes it."""

    name: str
    default: int
    env: str
    option: str | None = None
    unit: str = ""

    def value(self, override: int | str | None = None) -> int:
        """The limit in force: ``override`` (an option's value) if given, else the environment variable,
        else the default."""
        if override is not None and override != "":
            return _positive_int(override, self.option or self.name)
        raw = os.environ.get(self.env, "").strip()
        if raw:
            return _positive_int(raw, f"environment variable {self.env}")
        return self.default

    def how_to_raise(self) -> str:
        ways = ([self.option] if self.option else []) + [self.env]
        return " or ".join(ways)

    def exceeded(self, what: str, amount: int, limit: int, at_least: bool = False,
                 error: type[GeometryError] = ModelLoadError) -> GeometryError:
        """The one error for ``amount`` over ``limit``, naming what was measured, the limit and how to raise it."""
        unit = f" {self.unit}" if self.unit else ""
        return error(f"{what} has {'at least ' if at_least else ''}{amount:,}{unit}; the {self.name} limit "
                             f"is {limit:,}{unit} (raise it deliberately with {self.how_to_raise()})")


def _positive_int(raw, source: str) -> int:
    try:
        if isinstance(raw, bool):
            raise ValueError
        if isinstance(raw, float):
            if not raw.is_integer():
                raise ValueError
            raw = int(raw)
        value = int(str(raw).replace("_", "").replace(",", "")) if isinstance(raw, str) else int(raw)
    except (TypeError, ValueError):
        raise GeometryError(f"{source} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise GeometryError(f"{source} must be a positive integer, got {raw!r}")
    return value


INPUT_ELEMENTS = Limit("input-element", 3 * 512 * 512, "BOUNDARY_GEOMETRY_MAX_INPUT_ELEMENTS", "--max-input-elements",
                       "elements")
PARAMETERS = Limit("parameter", 100_000_000, "BOUNDARY_GEOMETRY_MAX_PARAMETERS", "--max-parameters", "parameters")
IMAGE_PIXELS = Limit("image-pixel", 40_000_000, "BOUNDARY_GEOMETRY_MAX_IMAGE_PIXELS", None, "pixels")
MODEL_BYTES = Limit("model-file", 512 * 2**20, "BOUNDARY_GEOMETRY_MAX_MODEL_BYTES", None, "bytes")
IMAGE_BYTES = Limit("image-file", 20 * 2**20, "BOUNDARY_GEOMETRY_MAX_IMAGE_BYTES", None, "bytes")

ALL = (INPUT_ELEMENTS, PARAMETERS, IMAGE_PIXELS, MODEL_BYTES, IMAGE_BYTES)


def max_input_elements(override: int | str | None = None) -> int:
    return INPUT_ELEMENTS.value(override)


def max_parameters(override: int | str | None = None) -> int:
    return PARAMETERS.value(override)


def max_image_pixels() -> int:
    return IMAGE_PIXELS.value()


def max_model_bytes() -> int:
    return MODEL_BYTES.value()


def max_image_bytes() -> int:
    return IMAGE_BYTES.value()


def check_input_shape(shape: tuple[int, ...], field: str, limit: int | None = None) -> None:
    """Refuse an input shape with more elements than the input-element limit; ``field`` names where it came from
    (``sidecar m.json: input_shape``, ``--input-shape``)."""
    limit = max_input_elements() if limit is None else limit
    n = math.prod(shape)
    if n > limit:
        raise INPUT_ELEMENTS.exceeded(f"{field} {list(shape)}", n, limit)


def check_parameters(count: int, what: str, limit: int | None = None) -> None:
    """Refuse ``count`` parameters (tensor elements) over the parameter limit; ``what`` names their source."""
    limit = max_parameters() if limit is None else limit
    if count > limit:
        raise PARAMETERS.exceeded(what, count, limit)
