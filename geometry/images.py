"""Images as a model sees them: the held-out gallery, uploads (PNG/JPEG) and ``.npy`` arrays.

Every loader returns an :class:`ImageInput`: the tensor in the model's input
shape and pixel range, plus the list of conversion steps applied (shown to the
user), the source and the true label when known. Imports numpy, torch, PIL.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import limits
from .classifier import Classifier
from .data import DATASETS, held_out
from .errors import ImageError

MAX_IMAGE_BYTES = limits.IMAGE_BYTES.default      # the defaults; the limits in force come from geometry.limits
MAX_IMAGE_PIXELS = limits.IMAGE_PIXELS.default
IMAGE_FORMATS = ("PNG", "JPEG")                   # the only decoders PIL may use on an upload
DIGIT_DATASETS = ("mnist", "digits")
# how much of the image the digit's bounding box fills once centred: MNIST's 20x20 box in 28x28; the 8x8
# digits (UCI optdigits: bitmaps size-normalised to their whole box, then averaged over 4x4 blocks) fill it all
DIGIT_BOX = {"mnist": 20 / 28, "digits": 1.0}


@dataclass
class ImageInput:
    """One image ready for a model: ``tensor`` has the model's input shape, float32, CPU."""

    tensor: torch.Tensor
    source: str
    steps: list[str] = field(default_factory=list)
    label: int | None = None
    original: np.ndarray | None = None

    @property
    def digest(self) -> str:
        """A short hash of the pixels, for cache keys."""
        return hashlib.sha1(self.tensor.detach().cpu().numpy().tobytes()).hexdigest()[:16]


# ------------------------------------------------------------------ gallery
def gallery_dataset(clf: Classifier) -> str:
    """The dataset whose held-out images serve as the model's gallery (MNIST for foreign models)."""
    return clf.dataset if clf.dataset in DATASETS else "mnist"


def gallery_counts(dataset: str) -> dict[int, int]:
    y = held_out(dataset).y
    return {int(c): int((y == c).sum()) for c in np.unique(y)}


def gallery_image(clf: Classifier, cls: int, index: int, dataset: str | None = None) -> ImageInput:
    """The ``index``-th held-out image of class ``cls``, converted to the model's input when needed."""
    dataset = dataset or gallery_dataset(clf)
    split = held_out(dataset)
    idx = np.flatnonzero(split.y == int(cls))
    if len(idx) == 0:
        raise ImageError(f"the {dataset} gallery has no class {cls}; classes are {sorted(set(split.y.tolist()))}")
    if not 0 <= int(index) < len(idx):
        raise ImageError(f"class {cls} of the {dataset} gallery has {len(idx)} images; index must be 0..{len(idx) - 1}")
    arr = split.x[idx[int(index)]]
    source = f"gallery {dataset}, class {cls}, #{index}"
    if tuple(arr.shape) == clf.input_shape and clf.pixel_range == (0.0, 1.0):
        return ImageInput(torch.from_numpy(arr.copy()), source, [], int(cls), arr[0])
    img = _array_to_pil(arr[0])
    out = convert_pil(img, clf, digit_like=False)
    out.source, out.label = source, int(cls)
    return out


def gallery_batch(clf: Classifier, per_class: int | None = None, dataset: str | None = None):
    """(x, y) of held-out images (all, or the first ``per_class`` of each class) as the model's input."""
    dataset = dataset or gallery_dataset(clf)
    split = held_out(dataset)
    keep = np.concatenate([np.flatnonzero(split.y == c)[:per_class] for c in np.unique(split.y)]) \
        if per_class else np.arange(len(split.y))
    keep = np.sort(keep)
    x = torch.from_numpy(split.x[keep])
    if tuple(x.shape[1:]) != clf.input_shape or clf.pixel_range != (0.0, 1.0):
        x = torch.stack([convert_pil(_array_to_pil(a[0]), clf, digit_like=False).tensor for a in split.x[keep]])
    return x, torch.from_numpy(split.y[keep])


# ------------------------------------------------------------------ uploads
def _array_to_pil(a: np.ndarray):
    from PIL import Image

    return Image.fromarray((np.clip(a, 0, 1) * 255).round().astype(np.uint8), mode="L")


def _open_pil(data: bytes, name: str):
    """Decode a PNG/JPEG after checking width x height from its header against the image-pixel limit."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    limit = limits.max_image_pixels()
    bad = (f"{name} is not a readable PNG or JPEG image", "; upload a PNG/JPEG file or a .npy array")
    with warnings.catch_warnings():
        # PIL warns above its own MAX_IMAGE_PIXELS and refuses only at twice it: we check the exact limit ourselves
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)  # reads the header only
        except Image.DecompressionBombError:
            raise ImageError(f"{name} has more pixels than the image-pixel limit of {limit:,}; resize it first "
                             f"(or raise the limit deliberately with {limits.IMAGE_PIXELS.env})") from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{bad[0]} ({exc.__class__.__name__}){bad[1]}") from None
        width, height = img.size
        if width * height > limit:
            raise ImageError(f"{name} is {width:,} x {height:,} = {width * height:,} pixels; the image-pixel limit is "
                             f"{limit:,} pixels (resize it first, or raise the limit deliberately with "
                             f"{limits.IMAGE_PIXELS.env})")
        saved = Image.MAX_IMAGE_PIXELS
        try:
            Image.MAX_IMAGE_PIXELS = max(limit, width * height)
            img.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"{bad[0]} ({exc.__class__.__name__}){bad[1]}") from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    return img


def _npy_header(data: bytes, name: str, clf: Classifier) -> None:
    """Check a .npy header before NumPy allocates anything: a plain real numeric dtype, no pickled objects, and as
    many elements as the model's input (NumPy would otherwise allocate the declared shape before reading)."""
    from numpy.lib import format as npformat

    f = io.BytesIO(data)
    try:
        version = npformat.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = npformat.read_array_header_1_0(f)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = npformat.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as exc:
        raise ImageError(f"{name} is not a plain .npy array ({str(exc).splitlines()[0][:120]}); pickled arrays are "
                         "never loaded") from None
    if dtype.hasobject:
        raise ImageError(f"{name} holds Python objects (dtype {dtype}); pickled arrays are never loaded: save a "
                         "numeric array")
    if dtype.names is not None or dtype.subdtype is not None:
        raise ImageError(f"{name} holds a structured array (dtype {dtype}); save a plain numeric array")
    if np.issubdtype(dtype, np.complexfloating):
        raise ImageError(f"{name} holds complex numbers (dtype {dtype}); pixels are real: save the real part "
                         "(np.real) if that is what you mean")
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise ImageError(f"{name} holds {dtype} data; it must be a numeric array")
    count = int(np.prod(shape, dtype=object)) if shape else 1
    if count != clf.dim:
        raise ImageError(f"{name} has shape {tuple(shape)}; the model expects {clf.input_shape} (or (H, W) for one "
                         "channel, or (H, W, C))")
    need = count * dtype.itemsize
    have = len(data) - f.tell()
    if have < need:
        raise ImageError(f"{name} declares {need:,} bytes of data but holds {have:,}; it is truncated")


def _center_digit(gray: np.ndarray, side: int, box_fraction: float = 20 / 28,
                  style: str = "MNIST style") -> tuple[np.ndarray, str]:
    """Crop the ink's bounding box, fit it in a box of ``box_fraction`` of the side (MNIST: 20/28), centre it."""
    from PIL import Image

    ink = gray > 0.1 * gray.max() if gray.max() > 0 else np.zeros_like(gray, dtype=bool)
    if not ink.any():
        return np.asarray(Image.fromarray((gray * 255).astype(np.uint8)).resize((side, side), Image.BILINEAR),
                          dtype=np.float32) / 255, f"resized to {side}x{side} (no ink found to centre)"
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    crop = gray[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = crop.shape
    box = max(1, round(side * box_fraction))
    scale = box / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize((nw, nh), Image.LANCZOS),
                       dtype=np.float32) / 255
    out = np.zeros((side, side), dtype=np.float32)
    top, left = (side - nh) // 2, (side - nw) // 2
    out[top:top + nh, left:left + nw] = small
    return out, f"cropped the digit, scaled it into {box}x{box} and centred it in {side}x{side} ({style})"


def convert_pil(img, clf: Classifier, digit_like: bool | None = None, source: str = "image",
                light_on_dark: bool | None = None) -> ImageInput:
    """Convert a PIL image to the model's channels, size and pixel range, listing each step.

    ``light_on_dark``: None guesses from the border whether a digit is dark on light (and inverts it);
    True never inverts (a drawing made in white on black), False always does."""
    from PIL import Image

    c, h, w = (clf.input_shape + (1, 1))[:3] if len(clf.input_shape) == 3 else (None, None, None)
    if c is None:
        raise ImageError(f"images can be converted only for (C, H, W) inputs; this model takes {clf.input_shape}: "
                         "give a .npy array of that shape")
    if c not in (1, 3):
        raise ImageError(f"the model takes {c} channels; images convert to 1 (grey) or 3 (RGB): give a .npy array")
    steps = []
    if img.mode not in ("L", "RGB"):
        steps.append(f"converted {img.mode} to {'greyscale' if c == 1 else 'RGB'}")
    elif (img.mode == "L") != (c == 1):
        steps.append(f"converted {'RGB to greyscale' if c == 1 else 'greyscale to RGB'}")
    if img.mode in ("RGBA", "LA", "P"):
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    img = img.convert("L" if c == 1 else "RGB")
    arr = np.asarray(img, dtype=np.float32) / 255.0
    original = arr.copy()
    digit_like = clf.dataset in DIGIT_DATASETS if digit_like is None else digit_like
    if digit_like and c == 1:
        border = np.concatenate([arr[0], arr[-1], arr[:, 0], arr[:, -1]])
        if light_on_dark is False or (light_on_dark is None and border.mean() > 0.5):
            arr = 1.0 - arr
            steps.append("inverted a light background (the model expects a light digit on black)")
        style = "MNIST style" if clf.dataset != "digits" else "8x8 digits style: the digit fills the box"
        arr, step = _center_digit(arr, h, DIGIT_BOX.get(clf.dataset, 20 / 28), style) if h == w else (arr, "")
        if step:
            steps.append(step)
    if arr.shape[:2] != (h, w):
        steps.append(f"resized {arr.shape[1]}x{arr.shape[0]} to {w}x{h}")
        mode_img = Image.fromarray((arr * 255).round().astype(np.uint8))
        arr = np.asarray(mode_img.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0
    t = torch.from_numpy(arr.copy())
    t = t.unsqueeze(0) if c == 1 else t.permute(2, 0, 1)
    lo, hi = clf.pixel_range
    if (lo, hi) != (0.0, 1.0):
        t = lo + t * (hi - lo)
        steps.append(f"scaled [0, 255] to the model's pixel range [{lo:g}, {hi:g}]")
    else:
        steps.append("scaled [0, 255] to [0, 1]")
    return ImageInput(t.contiguous(), source, steps, None, original)


def convert_array(arr: np.ndarray, clf: Classifier, source: str = "array") -> ImageInput:
    """Check a NumPy array against the model's input and return it as a tensor."""
    arr = np.asarray(arr)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ImageError(f"{source} holds {arr.dtype} data; it must be a numeric array")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ImageError(f"{source} holds complex numbers (dtype {arr.dtype}); pixels are real: pass the real part "
                         "(np.real) if that is what you mean")
    steps = []
    shape = clf.input_shape
    a = np.asarray(arr)
    if a.shape == (1, *shape):
        a = a[0]
    elif len(shape) == 3 and shape[0] == 1 and a.shape == shape[1:]:
        a = a[None]
        steps.append("added the channel axis")
    elif len(shape) == 3 and a.shape == (shape[1], shape[2], shape[0]):
        a = np.transpose(a, (2, 0, 1))
        steps.append("moved channels first (HWC to CHW)")
    elif a.size == int(np.prod(shape)) and a.ndim == 1:
        a = a.reshape(shape)
        steps.append(f"reshaped {a.size} values to {shape}")
    if tuple(a.shape) != tuple(shape):
        raise ImageError(f"{source} has shape {arr.shape}; the model expects {shape} (or (H, W) for one channel, or "
                         "(H, W, C))")
    if not np.isfinite(a).all():
        raise ImageError(f"{source} contains NaN or infinite values; replace them with pixel values")
    lo, hi = clf.pixel_range
    if np.issubdtype(a.dtype, np.integer) and (lo, hi) == (0.0, 1.0) and a.max() > 1:
        a = a.astype(np.float32) / 255.0
        steps.append("scaled integers 0..255 to [0, 1]")
    a = a.astype(np.float32)
    if a.min() < lo - 1e-6 or a.max() > hi + 1e-6:
        raise ImageError(f"{source} has values in [{a.min():g}, {a.max():g}], outside the model's pixel range "
                         f"[{lo:g}, {hi:g}]; rescale it (e.g. divide by 255)")
    return ImageInput(torch.from_numpy(np.ascontiguousarray(a)), source, steps, None,
                      a[0] if a.shape[0] == 1 else np.transpose(a, (1, 2, 0)))


def parse_gallery_ref(ref: str) -> tuple[str | None, int, int]:
    """"gallery:3:0" (class 3, first image) or "gallery:mnist:3:0" -> (dataset, class, index)."""
    parts = ref.split(":")[1:]
    try:
        if len(parts) == 2:
            return None, int(parts[0]), int(parts[1])
        if len(parts) == 3:
            return parts[0], int(parts[1]), int(parts[2])
    except ValueError:
        pass
    raise ImageError(f"gallery reference {ref!r} must look like gallery:CLASS:INDEX or gallery:DATASET:CLASS:INDEX")


def _too_big(name: str, max_bytes: int) -> ImageError:
    return ImageError(f"{name} is larger than the image-file limit of {max_bytes:,} bytes ({max_bytes / 2**20:g} MiB; "
                      f"raise it deliberately with {limits.IMAGE_BYTES.env})")


def load_image(src: str | Path | bytes, clf: Classifier, name: str | None = None,
               light_on_dark: bool | None = None) -> ImageInput:
    """An image for ``clf`` from a gallery reference, a PNG/JPEG/.npy path, or uploaded bytes (give ``name``).

    ``light_on_dark``: see :func:`convert_pil` (True for a drawing in white on black)."""
    if isinstance(src, str) and src.startswith("gallery:"):
        dataset, cls, index = parse_gallery_ref(src)
        if dataset is not None and dataset not in DATASETS:
            raise ImageError(f"unknown gallery dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
        return gallery_image(clf, cls, index, dataset)
    max_bytes = limits.max_image_bytes()
    if isinstance(src, (bytes, bytearray)):
        data, name = bytes(src), name or "upload"
    else:
        path = Path(src)
        name = name or path.name
        if not path.exists():
            raise ImageError(f"image file {str(path)!r} does not exist; give a PNG/JPEG/.npy path or gallery:CLASS:INDEX")
        if not path.is_file():
            raise ImageError(f"{str(path)!r} is not a file; give a PNG/JPEG/.npy path or gallery:CLASS:INDEX")
        if path.stat().st_size > max_bytes:
            raise _too_big(name, max_bytes)
        data = path.read_bytes()
    if len(data) > max_bytes:
        raise _too_big(name, max_bytes)
    if len(data) == 0:
        raise ImageError(f"{name} is empty")
    if name.lower().endswith(".npy") or data[:6] == b"\x93NUMPY":
        _npy_header(data, name, clf)
        try:
            arr = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as exc:
            raise ImageError(f"{name} is not a plain .npy array ({exc}); pickled arrays are never loaded") from None
        except Exception as exc:
            raise ImageError(f"{name} is not a readable .npy file ({exc.__class__.__name__})") from None
        return convert_array(arr, clf, name)
    out = convert_pil(_open_pil(data, name), clf, light_on_dark=light_on_dark)
    out.source = f"upload {name}"
    return out
