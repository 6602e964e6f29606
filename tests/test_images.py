"""Gallery, uploads and arrays become exactly the model's input; bad files get clear errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from geometry import ImageError, gallery_batch, gallery_image, load_image
from geometry.data import held_out, load_split


def _png(arr: np.ndarray, mode="L", fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def test_split_is_fixed_and_disjoint():
    train, test = load_split("mnist")
    assert len(train.y) == 4000 and len(test.y) == 1000
    assert np.bincount(test.y).tolist() == [100] * 10
    dtrain, dtest = load_split("digits")
    assert len(dtrain.y) + len(dtest.y) == 1797 and np.bincount(dtest.y).tolist() == [36] * 10
    # no held-out image appears in training
    tr = {a.tobytes() for a in train.x}
    assert not any(a.tobytes() in tr for a in test.x)


def test_gallery_by_class_and_index(gelu_model, digits_model):
    img = gallery_image(gelu_model, 3, 7)
    assert img.tensor.shape == (1, 28, 28) and img.label == 3 and img.steps == []
    x = held_out("mnist").x[np.flatnonzero(held_out("mnist").y == 3)[7]]
    assert torch.equal(img.tensor, torch.from_numpy(x))
    assert gallery_image(digits_model, 9, 35).tensor.shape == (1, 8, 8)
    with pytest.raises(ImageError, match="index must be 0..99"):
        gallery_image(gelu_model, 3, 100)
    x, y = gallery_batch(gelu_model, per_class=2)
    assert x.shape == (20, 1, 28, 28) and sorted(y.tolist()) == sorted(list(range(10)) * 2)
    assert load_image("gallery:mnist:4:1", gelu_model).label == 4
    assert load_image("gallery:2:0", digits_model).tensor.shape == (1, 8, 8)
    with pytest.raises(ImageError, match="gallery:CLASS:INDEX"):
        load_image("gallery:x", gelu_model)


def test_white_background_digit_is_inverted_and_centred(gelu_model):
    # a dark "1" drawn on white paper, off-centre, in a larger photo
    paper = np.full((120, 90), 250, dtype=np.uint8)
    paper[20:80, 15:25] = 10
    img = load_image(_png(paper), gelu_model, name="one.png")
    t = img.tensor
    assert t.shape == (1, 28, 28) and 0 <= t.min() and t.max() <= 1
    assert any("inverted" in s for s in img.steps) and any("centred" in s for s in img.steps)
    assert t[0, 0, 0] < 0.05 and t.max() > 0.9  # black background, bright stroke
    rows, cols = torch.nonzero(t[0] > 0.5, as_tuple=True)
    assert abs(rows.float().mean() - 13.5) < 2.5 and abs(cols.float().mean() - 13.5) < 2.5
    assert gelu_model.predict(t).item() == 1


def test_rgb_jpeg_and_gallery_roundtrip(gelu_model):
    x = gallery_image(gelu_model, 7, 0).tensor
    arr = (x[0].numpy() * 255).round().astype(np.uint8)
    rgb = np.stack([arr] * 3, axis=-1)
    img = load_image(_png(rgb, mode="RGB", fmt="JPEG"), gelu_model, name="seven.jpg")
    assert any("greyscale" in s for s in img.steps)
    assert gelu_model.predict(img.tensor).item() == 7


def test_npy_arrays(tmp_path, gelu_model, digits_model):
    x = gallery_image(gelu_model, 2, 0).tensor.numpy()
    np.save(tmp_path / "a.npy", x[0])  # (28, 28): channel axis added
    img = load_image(tmp_path / "a.npy", gelu_model)
    assert torch.equal(img.tensor, torch.from_numpy(x)) and "added the channel axis" in img.steps
    np.save(tmp_path / "u8.npy", (x[0] * 255).astype(np.uint8))
    assert load_image(tmp_path / "u8.npy", gelu_model).tensor.max() <= 1
    np.save(tmp_path / "big.npy", x * 255.0)
    with pytest.raises(ImageError, match="outside the model's pixel range"):
        load_image(tmp_path / "big.npy", gelu_model)
    bad = x.copy()
    bad[0, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(ImageError, match="NaN"):
        load_image(tmp_path / "nan.npy", gelu_model)
    np.save(tmp_path / "shape.npy", np.zeros((3, 5)))
    with pytest.raises(ImageError, match=r"shape \(3, 5\)"):
        load_image(tmp_path / "shape.npy", digits_model)
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ImageError, match="pickled arrays are never loaded"):
        load_image(buf.getvalue(), gelu_model, name="obj.npy")


def test_bad_image_files(tmp_path, gelu_model):
    with pytest.raises(ImageError, match="not a readable PNG or JPEG"):
        load_image(b"this is not an image", gelu_model, name="x.png")
    png = _png(np.zeros((28, 28), dtype=np.uint8))
    with pytest.raises(ImageError, match="not a readable PNG or JPEG"):
        load_image(png[: len(png) // 2], gelu_model, name="cut.png")
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "none.png", gelu_model)
    with pytest.raises(ImageError, match="empty"):
        load_image(b"", gelu_model, name="e.png")
