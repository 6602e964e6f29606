"""A small corpus of hostile or careless model and image files, for tests.

``build_corpus(folder)`` writes the files below into ``folder`` and returns
``{name: path}``; ``payload_ran(folder)`` lists the ``PWNED_*`` marker files a
payload would leave behind if it ever ran. Building takes a few seconds and
needs nothing but torch, numpy, safetensors and (optionally) a C compiler
``cc``; no network.

======================== ===================================================================
name                     what it is
======================== ===================================================================
pickle_payload.pt        ``torch.save`` zip whose pickle would create ``PWNED_pickle``
native.pt2               AOTInductor-style ``.pt2`` whose shared library's constructor
                         creates ``PWNED_native`` (a real ``.so`` when ``cc`` exists, else
                         a dummy with the same member names)
huge_sidecar.safetensors bundled LeNet weights; sidecar ``huge_sidecar.json`` declares
                         ``input_shape`` [3, 20000, 20000]
vit_bomb.safetensors     100-byte file; sidecar ``vit_bomb.json`` names ``vit_h_14``
slow.pt                  TorchScript model whose forward loops for minutes (valid logits)
int_logits.pt            TorchScript model returning integer logits (sidecar beside it)
batch_one.pt             TorchScript model that always returns a batch of one
complex.npy              a complex64 28x28 array
declared_huge.pt2        small ``torch.export`` zip declaring a 100000x10000 weight
======================== ===================================================================

The three TorchScript models get a sidecar (``slow.json`` ...) with their input
shape, so they load without options.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LENET_WEIGHTS = ROOT / "assets" / "models" / "mnist_lenet_relu.safetensors"
LENET_CARD = ROOT / "assets" / "models" / "mnist_lenet_relu.json"
MARKER_PREFIX = "PWNED_"
SLOW_ITERATIONS = 20_000_000  # ~7 microseconds each in the TorchScript interpreter: about 2 minutes per call


def payload_ran(folder: str | Path) -> list[str]:
    """Names of the marker files any payload of the corpus left in ``folder`` (empty when none ran)."""
    return sorted(p.name for p in Path(folder).glob(f"{MARKER_PREFIX}*"))


class _OpenOnUnpickle:
    """Unpickling this object calls ``open(marker, "w")``: the file appearing proves the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickle_payload(folder: Path) -> Path:
    import torch

    path = folder / "pickle_payload.pt"
    torch.save({"0.weight": torch.zeros(2, 2), "payload": _OpenOnUnpickle(folder / f"{MARKER_PREFIX}pickle")},
               str(path))
    return path


_CONSTRUCTOR_C = """\
#include <stdio.h>
__attribute__((constructor)) static void boundary_geometry_marker(void) {
    FILE *f = fopen(%s, "w");
    if (f) { fputs("native code from a model file ran\\n", f); fclose(f); }
}
"""


def _shared_library(folder: Path) -> tuple[bytes, bool]:
    """A .so whose constructor writes ``PWNED_native`` (compiled with ``cc``), or dummy bytes without one."""
    cc = shutil.which("cc")
    if cc:
        work = folder / ".native_build"
        work.mkdir(exist_ok=True)
        src, lib = work / "payload.c", work / "payload.so"
        marker = str((folder / f"{MARKER_PREFIX}native").resolve())
        src.write_text(_CONSTRUCTOR_C % json.dumps(marker))
        proc = subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], capture_output=True, timeout=60)
        if proc.returncode == 0 and lib.exists():
            data = lib.read_bytes()
            shutil.rmtree(work, ignore_errors=True)
            return data, True
        shutil.rmtree(work, ignore_errors=True)
    return b"\x7fELF" + bytes(60), False


def _native_pt2(folder: Path) -> tuple[Path, bool]:
    """The member layout torch.export.load hands to AOTInductor's loader, which dlopen()s the .so."""
    so, real = _shared_library(folder)
    path = folder / "native.pt2"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("native/archive_format", "pt2")
        z.writestr("native/archive_version", "0")
        z.writestr("native/.data/version", "2")
        z.writestr("native/byteorder", "little")
        z.writestr("native/data/aotinductor/model/model.wrapper_metadata.json", json.dumps({"AOTI_DEVICE_KEY": "cpu"}))
        z.writestr("native/data/aotinductor/model/model.wrapper.so", so)
        z.writestr("native/data/aotinductor/model/model.wrapper.cpp", "// AOTInductor wrapper source\n")
    return path, real


def _declared_huge_pt2(folder: Path) -> Path:
    """A well-formed torch.export archive layout whose one weight declares 100000x10000 float32 over 0 bytes
    (torch.export.load answers an empty record with torch.zeros of the declared size: 4 GB)."""
    meta = {"dtype": 7, "sizes": [{"as_int": 100000}, {"as_int": 10000}], "requires_grad": False,
            "device": {"type": "cpu", "index": None}, "strides": [{"as_int": 10000}, {"as_int": 1}],
            "storage_offset": {"as_int": 0}, "layout": 7}
    weights = {"config": {"weight": {"path_name": "weight_0", "is_param": True, "use_pickle": False,
                                     "tensor_meta": meta}}}
    path = folder / "declared_huge.pt2"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("declared_huge/data/weights/weight_0", b"")
        z.writestr("declared_huge/data/weights/model_weights_config.json", json.dumps(weights))
        z.writestr("declared_huge/data/constants/model_constants_config.json", json.dumps({"config": {}}))
        z.writestr("declared_huge/models/model.json", json.dumps({"graph_module": {}}))
        z.writestr("declared_huge/archive_format", "pt2")
        z.writestr("declared_huge/archive_version", "0")
        z.writestr("declared_huge/.data/version", "2")
        z.writestr("declared_huge/byteorder", "little")
    return path


def _safetensors_bytes(tensors: dict[str, tuple[str, list[int], bytes]]) -> bytes:
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + b"".join(blobs)


def _torchscript_models(folder: Path) -> dict[str, Path]:
    import torch
    from torch import nn

    class Slow(nn.Module):
        def __init__(self, iterations: int):
            super().__init__()
            self.iterations = iterations

        def forward(self, x):
            acc = torch.zeros(x.shape[0], 2, dtype=x.dtype)
            for _ in range(self.iterations):
                acc = acc + 1e-12
            return acc + x.flatten(1)[:, :2]

    class IntLogits(nn.Module):
        def forward(self, x):
            return (x.flatten(1)[:, :3] * 10).round().long()

    class BatchOne(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:1, :10]

    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script/save deprecation notices
        for name, module in (("slow", Slow(SLOW_ITERATIONS)), ("int_logits", IntLogits()), ("batch_one", BatchOne())):
            path = folder / f"{name}.pt"
            torch.jit.save(torch.jit.script(module), str(path))
            (folder / f"{name}.json").write_text(json.dumps({"input_shape": [1, 8, 8], "pixel_range": [0, 1]}))
            out[f"{name}.pt"] = path
            out[f"{name}.json"] = folder / f"{name}.json"
    return out


def build_corpus(folder: str | Path) -> dict[str, Path]:
    """Write the hostile corpus into ``folder`` (created when missing) and return ``{name: path}``.

    Whether ``native.pt2`` carries a compiled library or a dummy is told by :func:`native_is_real`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["pickle_payload.pt"] = _pickle_payload(folder)
    files["native.pt2"], real = _native_pt2(folder)
    (folder / ".native_is_real").write_text("1" if real else "0")

    card = json.loads(LENET_CARD.read_text())
    huge = folder / "huge_sidecar.safetensors"
    shutil.copyfile(LENET_WEIGHTS, huge)
    (folder / "huge_sidecar.json").write_text(json.dumps({
        "architecture": card["architecture"], "arch_kwargs": card["arch_kwargs"], "input_shape": [3, 20000, 20000],
        "pixel_range": [0, 1], "class_names": card["class_names"]}))
    files["huge_sidecar.safetensors"], files["huge_sidecar.json"] = huge, folder / "huge_sidecar.json"

    bomb = folder / "vit_bomb.safetensors"
    bomb.write_bytes(_safetensors_bytes({"head.weight": ("F32", [2, 2], bytes(16))}))
    (folder / "vit_bomb.json").write_text(json.dumps({"architecture": "vit_h_14", "input_shape": [3, 224, 224],
                                                      "pixel_range": [0, 1]}))
    files["vit_bomb.safetensors"], files["vit_bomb.json"] = bomb, folder / "vit_bomb.json"

    files.update(_torchscript_models(folder))

    rng = np.random.default_rng(0)
    arr = (rng.random((28, 28)) + 1j * rng.random((28, 28))).astype(np.complex64)
    np.save(folder / "complex.npy", arr)
    files["complex.npy"] = folder / "complex.npy"

    files["declared_huge.pt2"] = _declared_huge_pt2(folder)
    return files


def native_is_real(folder: str | Path) -> bool:
    """Whether ``native.pt2`` in ``folder`` carries a compiled library (``cc`` was found) or a dummy."""
    flag = Path(folder) / ".native_is_real"
    return flag.exists() and flag.read_text() == "1"


if __name__ == "__main__":
    import sys
    import time

    t = time.perf_counter()
    built = build_corpus(sys.argv[1] if len(sys.argv) > 1 else "hostile_corpus")
    for k, v in built.items():
        print(f"{k:28s} {v.stat().st_size:>9,d} bytes")
    print(f"built in {time.perf_counter() - t:.1f} s")
