"""Look inside zip-based model files with :mod:`zipfile` before torch opens them.

Three archive layouts are accepted, each with exactly the members torch 2.14 writes:

``torch.jit.save`` (TorchScript)
    ``data.pkl``, ``constants.pkl``, ``traced_inputs.pkl``; tensor records ``data/N``, ``constants/N``,
    ``traced_inputs/N``; TorchScript source ``code/**.py`` with its ``.py.debug_pkl``; ``version``,
    ``byteorder``, ``.data/version``, ``.data/serialization_id``; user files ``extra/NAME``.
``torch.export.save`` (``.pt2``)
    ``archive_format`` (``pt2``), ``archive_version`` (``0``), ``byteorder``, ``.data/version``,
    ``.data/serialization_id``, ``models/NAME.json``, ``data/weights/NAME_weights_config.json``,
    ``data/weights/weight_N``, ``data/constants/NAME_constants_config.json``, ``data/constants/tensor_N``,
    ``data/sample_inputs/NAME.pt`` (itself a ``torch.save`` archive, checked the same way), ``extra/NAME``.
``torch.save`` (a state dict)
    ``data.pkl``, ``data/N``, ``.format_version``, ``.storage_alignment``, ``byteorder``, ``version``,
    ``.data/version``, ``.data/serialization_id``.

Every member sits under one top folder. Anything else is refused with one line naming the member and the
reason; in particular native libraries and sources (``.so``, ``.dll``, ``.dylib``, ``.cpp``, ``.h``, ...),
anything under ``data/aotinductor/`` (torch.export.load would dlopen it, running its constructors), pickled
objects (``custom_obj_*``, ``opaque_obj_*``, weights with ``use_pickle``), mobile bytecode and unknown names.

Declared tensor sizes are checked against the bytes actually present: each storage named in a pickle
(read by a scanner that never calls anything the pickle names) must have a record of exactly its byte size,
each tensor view must fit its storage, and each ``.pt2`` weight's sizes/strides must fit its record (an
empty record declaring a non-empty tensor is refused: torch would answer it with ``torch.zeros`` of the
declared size). :func:`inspect_archive` returns the number of tensor elements stored, for the parameter limit.

:func:`inspect_safetensors` does the same for a safetensors header (8-byte length, JSON) without reading
the tensors.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelLoadError

NATIVE_SUFFIXES = (".so", ".dll", ".dylib", ".pyd", ".o", ".obj", ".a", ".lib", ".c", ".cc", ".cpp", ".cxx", ".h",
                   ".hh", ".hpp", ".cu", ".cuh", ".ptx", ".cubin", ".fatbin", ".hsaco", ".spv", ".exe", ".sh")
MAX_MEMBERS = 100_000
MAX_PICKLE_BYTES = 64 * 2**20        # data.pkl / constants.pkl of the largest accepted model are a few MB
MAX_JSON_BYTES = 64 * 2**20          # models/model.json, the weight and constant configs
MAX_SAFETENSORS_HEADER = 100 * 2**20  # the safetensors format's own bound on its header
MAX_DIMS = 64

# bytes per element of torch's typed storages (the names torch.save / torch.jit.save write in pickles)
STORAGE_ITEMSIZE = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2, "LongStorage": 8,
    "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1, "ByteStorage": 1, "BoolStorage": 1,
    "ComplexDoubleStorage": 16, "ComplexFloatStorage": 8, "QUInt8Storage": 1, "QInt8Storage": 1,
    "QInt32Storage": 4, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "UntypedStorage": 1,
    "Float8_e4m3fnStorage": 1, "Float8_e5m2Storage": 1, "Float8_e4m3fnuzStorage": 1, "Float8_e5m2fnuzStorage": 1,
    "UInt16Storage": 2, "UInt32Storage": 4, "UInt64Storage": 8,
}
# torch._export.serde.schema.ScalarType -> bytes per element
EXPORT_ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1, 13: 2, 28: 2,
                   29: 1, 30: 1, 31: 1, 32: 1, 33: 1, 34: 4, 35: 8}
EXPORT_STRIDED_LAYOUT = 7
# safetensors dtype -> bytes per element
SAFETENSORS_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                        "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8}

_NAME = r"[A-Za-z0-9_]+"
_NUM = r"[0-9]+"
_CODE = r"code/(?:[A-Za-z0-9_.]+/)*[A-Za-z0-9_.]+\.py(?:\.debug_pkl)?"
_COMMON = (r"byteorder", r"version", r"\.data/version", r"\.data/serialization_id")
PATTERNS = {
    "torchscript": _COMMON + (r"data\.pkl", r"constants\.pkl", r"traced_inputs\.pkl", rf"data/{_NUM}",
                              rf"constants/{_NUM}", rf"traced_inputs/{_NUM}", _CODE, r"extra/[^/]+"),
    "export": (r"archive_format", r"archive_version", r"byteorder", r"\.data/version", r"\.data/serialization_id",
               rf"models/{_NAME}\.json", rf"data/weights/{_NAME}_weights_config\.json", rf"data/weights/weight_{_NUM}",
               rf"data/constants/{_NAME}_constants_config\.json", rf"data/constants/tensor_{_NUM}",
               rf"data/sample_inputs/{_NAME}\.pt", r"extra/[^/]+"),
    "state_dict": _COMMON + (r"data\.pkl", rf"data/{_NUM}", r"\.format_version", r"\.storage_alignment"),
}
_COMPILED = {kind: re.compile("|".join(f"(?:{p})" for p in pats)) for kind, pats in PATTERNS.items()}
KIND_WORDS = {"torchscript": "TorchScript (torch.jit.save)", "export": "torch.export (.pt2)",
              "state_dict": "torch.save state dict"}


@dataclass
class ArchiveInfo:
    """What :func:`inspect_archive` found: the layout, the top folder, the members and the stored elements."""

    kind: str
    root: str
    names: list[str] = field(default_factory=list)
    stored_elements: int = 0


def _refuse(label: str, text: str) -> ModelLoadError:
    return ModelLoadError(f"{label}: {text}")


def _forbidden_reason(rel: str) -> str | None:
    """Why a member may never be handed to torch (None when it is not one of the forbidden kinds)."""
    low = rel.lower()
    base = low.rsplit("/", 1)[-1]
    aoti = low.startswith("data/aotinductor/")
    if low.endswith(NATIVE_SUFFIXES):
        return ("a native library or source file" + (" of AOTInductor compiled code, which torch.export.load would "
                                                     "load and run" if aoti else "")
                + "; model files may hold only weights and graphs (export without AOTInductor)")
    if aoti:
        return ("AOTInductor compiled code, which torch.export.load would load as a native library and run; "
                "export the model with torch.export.save without AOTInductor")
    if low.startswith("data/constants/") and (base.startswith("custom_obj_") or base.startswith("opaque_obj_")):
        return "a pickled Python/script object, which is never loaded; keep only tensor constants"
    if low.startswith(("data/executorch/", "data/mtia", "xl_model_weights/")):
        return "a runtime-specific payload this tool does not load"
    if base in ("bytecode.pkl", "mobile_info.json") or low.startswith("bytecode/"):
        return "TorchScript mobile bytecode, which this tool does not load; save with torch.jit.save"
    return None


def _check_names(infos: list[zipfile.ZipInfo], label: str, total_limit: int) -> tuple[str, list[str]]:
    if not infos:
        raise _refuse(label, "the zip archive is empty; it is not a model")
    if len(infos) > MAX_MEMBERS:
        raise _refuse(label, f"the archive has {len(infos):,} members (limit {MAX_MEMBERS:,}); it is not a model")
    seen: set[str] = set()
    roots: set[str] = set()
    rels: list[str] = []
    total = 0
    for info in infos:
        name = info.filename
        parts = name.split("/")
        if (name.startswith("/") or "\\" in name or "\x00" in name or ".." in parts or "" in parts
                or len(parts) < 2 or info.is_dir()):
            raise _refuse(label, f"member {name!r} has an unsafe or unexpected path; a model archive holds files "
                                 "under one top folder")
        if name in seen:
            raise _refuse(label, f"member {name!r} appears twice; refusing an ambiguous archive")
        seen.add(name)
        roots.add(parts[0])
        rels.append("/".join(parts[1:]))
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _refuse(label, f"member {name!r} uses compression method {info.compress_type}; torch archives "
                                 "are stored or deflated")
        total += info.file_size
    if len(roots) != 1:
        raise _refuse(label, f"members sit under {len(roots)} top folders ({', '.join(sorted(roots)[:4])}); a torch "
                             "archive has exactly one")
    if total > total_limit:
        raise _refuse(label, f"the archive unpacks to {total:,} bytes; the model-file limit is {total_limit:,} bytes "
                             "(raise it deliberately with BOUNDARY_GEOMETRY_MAX_MODEL_BYTES)")
    return roots.pop(), rels


def _kind(rels: set[str], label: str) -> str:
    if "archive_format" in rels:
        return "export"
    if "serialized_exported_program.json" in rels:
        raise _refuse(label, "this is the legacy torch.export layout (serialized_exported_program.json), whose "
                             "state is pickled; load it in its torch version and save it again with torch.export.save")
    if "constants.pkl" in rels or any(r.startswith("code/") for r in rels):
        return "torchscript"
    if "data.pkl" in rels:
        return "state_dict"
    raise _refuse(label, "the zip archive is neither TorchScript (torch.jit.save), torch.export (.pt2) nor a "
                         "torch.save state dict")


# ------------------------------------------------------------------ pickles, scanned without running them
class _Inert:
    """Stands in for every class and function a scanned pickle names: accepts anything, does nothing."""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass

    def add(self, item):
        pass


@dataclass
class _StorageRef:
    key: str


def _global_allowed(module: str, name: str, torchscript: bool) -> bool:
    if module == "collections" and name == "OrderedDict":
        return True
    if module == "torch":
        return name.endswith("Storage") or name in ("Size", "device", "dtype", "layout", "memory_format") or \
            re.fullmatch(r"(u?int[0-9]+|float[0-9_a-z]*|bfloat16|half|double|long|short|bool|complex[0-9]+|"
                         r"cfloat|cdouble|qu?int[0-9x]+|strided|sparse_[a-z]+|contiguous_format|channels_last(_3d)?|"
                         r"preserve_format)", name) is not None
    if module == "torch._utils":
        return name.startswith("_rebuild_")
    if (module, name) in (("torch._tensor", "_rebuild_from_type_v2"), ("torch.nn.parameter", "Parameter"),
                          ("torch.serialization", "_get_layout")):
        return True
    if torchscript:
        return module == "__torch__" or module.startswith("__torch__.") or module == "torch.jit._pickle"
    return False


class _StorageScanner(pickle.Unpickler):
    """Reads a torch pickle's structure, recording storages and tensor views; calls nothing it names."""

    def __init__(self, data: bytes, member: str, label: str, torchscript: bool):
        super().__init__(io.BytesIO(data))
        self.member, self.label, self.torchscript = member, label, torchscript
        self.storages: dict[str, tuple[str, int]] = {}
        self.views: list[tuple[str, int, tuple, tuple]] = []

    def find_class(self, module, name):
        if not _global_allowed(module, name, self.torchscript):
            raise _refuse(self.label, f"{self.member} names the Python callable {module}.{name}, which would run "
                                      "when unpickled; such objects are never loaded (save a state dict of tensors "
                                      "as safetensors, or the model with torch.jit.save or torch.export.save)")
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self._rebuild_tensor
        if module == "torch" and name.endswith("Storage"):
            return name
        return type(f"{module}.{name}", (_Inert,), {})

    def _rebuild_tensor(self, storage, offset, size, stride, *rest):
        if isinstance(storage, _StorageRef):
            self.views.append((storage.key, offset, tuple(size) if isinstance(size, (tuple, list)) else size,
                               tuple(stride) if isinstance(stride, (tuple, list)) else stride))
        return _Inert()

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise _refuse(self.label, f"{self.member} refers to an unknown kind of persistent object; only tensor "
                                      "storages are accepted")
        _, stype, key, _location, numel = pid[:5]
        if not isinstance(stype, str) or stype not in STORAGE_ITEMSIZE:
            raise _refuse(self.label, f"{self.member} declares a storage of unknown type {stype!r}")
        if not isinstance(key, str) or not re.fullmatch(_NUM, key) or not isinstance(numel, int) \
                or isinstance(numel, bool) or numel < 0:
            raise _refuse(self.label, f"{self.member} declares a malformed storage ({key!r}, {numel!r})")
        if key in self.storages and self.storages[key] != (stype, numel):
            raise _refuse(self.label, f"{self.member} declares storage {key} twice with different sizes")
        self.storages[key] = (stype, numel)
        return _StorageRef(key)


def _scan_pickle(zf: zipfile.ZipFile, root: str, rel: str, record_dir: str, sizes: dict[str, int], label: str,
                 torchscript: bool, empty_records: bool = False) -> int:
    """Check every storage a pickle declares against its record; return the elements stored.

    ``empty_records``: torch.jit.save writes the storages of ``traced_inputs.pkl`` as empty records (and
    torch.jit.load never reads them); those may be empty, or else must match."""
    info = zf.getinfo(f"{root}/{rel}")
    if info.file_size > MAX_PICKLE_BYTES:
        raise _refuse(label, f"{rel} is {info.file_size:,} bytes; a model's pickle is at most "
                             f"{MAX_PICKLE_BYTES:,} bytes")
    scanner = _StorageScanner(zf.read(info), rel, label, torchscript)
    try:
        scanner.load()
    except ModelLoadError:
        raise
    except RecursionError:
        raise _refuse(label, f"{rel} is nested too deeply to be a model") from None
    except Exception as exc:
        raise _refuse(label, f"{rel} is not a readable torch pickle ({type(exc).__name__}); the file may be "
                             "truncated or not a model") from None
    elements = 0
    for key, (stype, numel) in scanner.storages.items():
        record = f"{record_dir}/{key}"
        need = numel * STORAGE_ITEMSIZE[stype]
        have = sizes.get(record)
        if have is None:
            raise _refuse(label, f"{rel} refers to storage {record}, which the archive does not hold; it may be "
                                 "truncated")
        if empty_records and have == 0:
            continue
        if have != need:
            raise _refuse(label, f"{rel} declares storage {record} as {numel:,} elements ({need:,} bytes) but the "
                                 f"archive holds {have:,} bytes; refusing a file whose sizes do not match its data")
        elements += numel
    for key, offset, size, stride in scanner.views:
        stype, numel = scanner.storages[key]
        if empty_records and sizes.get(f"{record_dir}/{key}") == 0:
            continue
        _check_view(label, f"a tensor on storage {record_dir}/{key}", size, stride, offset, numel)
    return elements


def _check_view(label: str, what: str, size, stride, offset, available: int) -> int:
    """Refuse a strided view reaching past ``available`` elements; return its element count."""
    if not (isinstance(size, tuple) and isinstance(stride, tuple) and len(size) == len(stride) <= MAX_DIMS
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size + stride)
            and isinstance(offset, int) and not isinstance(offset, bool) and offset >= 0):
        raise _refuse(label, f"{what} has a malformed shape {size!r} / stride {stride!r}")
    numel = math.prod(size)
    if numel == 0:
        return 0
    last = offset + sum((s - 1) * st for s, st in zip(size, stride))
    if last >= available:
        raise _refuse(label, f"{what} declares shape {list(size)} reaching element {last + 1:,} but only "
                             f"{available:,} elements are stored; refusing a file whose sizes do not match its data")
    return numel


# ------------------------------------------------------------------ torch.export
def _read_json(zf: zipfile.ZipFile, root: str, rel: str, label: str):
    info = zf.getinfo(f"{root}/{rel}")
    if info.file_size > MAX_JSON_BYTES:
        raise _refuse(label, f"{rel} is {info.file_size:,} bytes (limit {MAX_JSON_BYTES:,})")
    try:
        return json.loads(zf.read(info))
    except (ValueError, UnicodeDecodeError):
        raise _refuse(label, f"{rel} is not valid JSON; the archive may be corrupt") from None


def _int_list(items, what: str, label: str) -> tuple[int, ...]:
    if not isinstance(items, list) or len(items) > MAX_DIMS:
        raise _refuse(label, f"{what} is not a list of at most {MAX_DIMS} sizes")
    out = []
    for it in items:
        v = it.get("as_int") if isinstance(it, dict) else None
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise _refuse(label, f"{what} has a symbolic or negative entry {it!r}; stored tensors have fixed sizes")
        out.append(v)
    return tuple(out)


def _check_payload_config(zf, root, rel, base_dir, prefix, sizes, label) -> int:
    config = _read_json(zf, root, rel, label)
    entries = config.get("config") if isinstance(config, dict) else None
    if not isinstance(entries, dict):
        raise _refuse(label, f"{rel} has no 'config' object")
    files: dict[str, int] = {}
    for fqn, meta in entries.items():
        if not isinstance(meta, dict):
            raise _refuse(label, f"{rel}: entry {fqn!r} is not an object")
        path_name = meta.get("path_name")
        if meta.get("use_pickle"):
            raise _refuse(label, f"{rel}: {fqn!r} is stored pickled ({path_name}), which is never loaded; export "
                                 "tensors as plain (dense, strided) tensors")
        if not isinstance(path_name, str) or not re.fullmatch(rf"{prefix}{_NUM}", path_name):
            raise _refuse(label, f"{rel}: {fqn!r} points to {path_name!r}; only {prefix}N tensor records are loaded")
        tm = meta.get("tensor_meta")
        if not isinstance(tm, dict):
            raise _refuse(label, f"{rel}: {fqn!r} has no tensor_meta")
        if tm.get("layout") != EXPORT_STRIDED_LAYOUT:
            raise _refuse(label, f"{rel}: {fqn!r} has layout {tm.get('layout')!r}; only dense strided tensors "
                                 "are loaded")
        itemsize = EXPORT_ITEMSIZE.get(tm.get("dtype"))
        if itemsize is None:
            raise _refuse(label, f"{rel}: {fqn!r} has unknown dtype code {tm.get('dtype')!r}")
        size = _int_list(tm.get("sizes"), f"{rel}: {fqn!r} sizes", label)
        stride = _int_list(tm.get("strides"), f"{rel}: {fqn!r} strides", label)
        offset = tm.get("storage_offset", {}).get("as_int") if isinstance(tm.get("storage_offset"), dict) else None
        record = f"{base_dir}{path_name}"
        have = sizes.get(record)
        if have is None:
            raise _refuse(label, f"{rel}: {fqn!r} refers to {record}, which the archive does not hold")
        if have % itemsize:
            raise _refuse(label, f"{record} holds {have:,} bytes, not a whole number of {itemsize}-byte elements")
        _check_view(label, f"{rel}: {fqn!r}", size, stride, offset, have // itemsize)
        files[record] = have // itemsize
    return sum(files.values())


def _check_export(zf, root, rels, sizes, label) -> int:
    fmt = zf.read(f"{root}/archive_format").strip()
    if fmt != b"pt2":
        raise _refuse(label, f"archive_format is {fmt[:20]!r}, not 'pt2'")
    if "archive_version" not in rels:
        raise _refuse(label, "archive_version is missing; it is not a complete torch.export archive")
    models = [r for r in rels if r.startswith("models/")]
    if "models/model.json" not in rels:
        raise _refuse(label, "models/model.json is missing; it is not a torch.export.save program")
    elements = 0
    for m in models:
        name = m[len("models/"):-len(".json")]
        wcfg, ccfg = f"data/weights/{name}_weights_config.json", f"data/constants/{name}_constants_config.json"
        for cfg in (wcfg, ccfg):
            if cfg not in rels:
                raise _refuse(label, f"{cfg} is missing; the program's weights cannot be checked")
        elements += _check_payload_config(zf, root, wcfg, "data/weights/", "weight_", sizes, label)
        elements += _check_payload_config(zf, root, ccfg, "data/constants/", "tensor_", sizes, label)
    for rel in rels:
        if rel.startswith("data/sample_inputs/"):
            info = zf.getinfo(f"{root}/{rel}")
            inner = inspect_archive_bytes(zf.read(info), f"{label} ({rel})", expect="state_dict")
            elements += inner.stored_elements
    return elements


# ------------------------------------------------------------------ entry points
def _inspect(zf: zipfile.ZipFile, label: str, total_limit: int, expect: str | None) -> ArchiveInfo:
    infos = zf.infolist()
    root, rels = _check_names(infos, label, total_limit)
    # native code first, so the message names the library rather than a file next to it
    for rel in sorted(rels, key=lambda r: not r.lower().endswith(NATIVE_SUFFIXES)):
        reason = _forbidden_reason(rel)
        if reason:
            raise _refuse(label, f"member {rel!r} is {reason}")
    relset = set(rels)
    kind = _kind(relset, label)
    if expect and kind != expect:
        raise _refuse(label, f"expected a {KIND_WORDS[expect]} archive, found a {KIND_WORDS[kind]} one")
    pattern = _COMPILED[kind]
    for rel in rels:
        if not pattern.fullmatch(rel):
            raise _refuse(label, f"member {rel!r} is not part of a {KIND_WORDS[kind]} archive as torch writes it; "
                                 "refusing unknown content")
    sizes = {rel: info.file_size for rel, info in zip(rels, infos)}
    if kind == "export":
        elements = _check_export(zf, root, relset, sizes, label)
    else:
        elements = 0
        pickles = (("data.pkl", "data"),) if kind == "state_dict" else \
            (("data.pkl", "data"), ("constants.pkl", "constants"), ("traced_inputs.pkl", "traced_inputs"))
        if "data.pkl" not in relset:
            raise _refuse(label, "data.pkl is missing; the archive is incomplete")
        for rel, record_dir in pickles:
            if rel in relset:
                elements += _scan_pickle(zf, root, rel, record_dir, sizes, label, kind == "torchscript",
                                         empty_records=rel == "traced_inputs.pkl")
    return ArchiveInfo(kind, root, rels, elements)


def inspect_archive(path: str | Path, total_limit: int = 512 * 2**20, expect: str | None = None) -> ArchiveInfo:
    """Check a zip-based model file member by member before torch sees it.

    ``total_limit`` bounds the bytes the archive unpacks to; ``expect`` ("torchscript", "export",
    "state_dict") refuses any other layout. Raises :class:`ModelLoadError` with one line naming the
    member and the reason."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            return _inspect(zf, path.name, total_limit, expect)
    except zipfile.BadZipFile as exc:
        raise _refuse(path.name, f"not a readable zip archive ({exc}); it may be truncated or not a model") from None


def inspect_archive_bytes(data: bytes, label: str, total_limit: int = 512 * 2**20,
                          expect: str | None = None) -> ArchiveInfo:
    """:func:`inspect_archive` for an archive held in memory (e.g. nested in a ``.pt2``)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return _inspect(zf, label, total_limit, expect)
    except zipfile.BadZipFile as exc:
        raise _refuse(label, f"not a readable zip archive ({exc}); it may be truncated") from None


@dataclass
class SafetensorsInfo:
    """A safetensors header: tensor name -> (dtype, shape), and the elements stored."""

    tensors: dict[str, tuple[str, tuple[int, ...]]]
    stored_elements: int
    metadata: dict


def inspect_safetensors(path: str | Path) -> SafetensorsInfo:
    """Read and check a safetensors header (never the tensors): every tensor's byte range must lie in the file
    and match its dtype and shape exactly, with no overlaps."""
    path = Path(path)
    label = path.name
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise _refuse(label, "not a readable safetensors file (shorter than its 8-byte header length); it may "
                                 "be truncated or not a model")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_SAFETENSORS_HEADER or 8 + n > size:
            raise _refuse(label, f"not a readable safetensors file: its header claims {n:,} bytes but the file has "
                                 f"{size:,}; it may be truncated or not a model")
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise _refuse(label, "not a readable safetensors file (its header is not JSON); it may be truncated or not "
                             "a model") from None
    if not isinstance(header, dict):
        raise _refuse(label, "not a readable safetensors file (its header is not a JSON object)")
    data_len = size - 8 - n
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _refuse(label, "the safetensors __metadata__ is not an object")
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    ranges = []
    elements = 0
    for name, meta in header.items():
        if not isinstance(meta, dict):
            raise _refuse(label, f"safetensors entry {name!r} is not an object")
        dtype, shape, offs = meta.get("dtype"), meta.get("shape"), meta.get("data_offsets")
        if dtype not in SAFETENSORS_ITEMSIZE:
            raise _refuse(label, f"tensor {name!r} has unsupported dtype {dtype!r}")
        if not (isinstance(shape, list) and len(shape) <= MAX_DIMS
                and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise _refuse(label, f"tensor {name!r} has a malformed shape {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2
                and all(isinstance(o, int) and not isinstance(o, bool) for o in offs) and 0 <= offs[0] <= offs[1]):
            raise _refuse(label, f"tensor {name!r} has malformed data_offsets {offs!r}")
        numel = math.prod(shape)
        need = numel * SAFETENSORS_ITEMSIZE[dtype]
        if offs[1] > data_len:
            raise _refuse(label, f"tensor {name!r} ends at byte {offs[1]:,} but the file holds {data_len:,} data "
                                 "bytes; it may be truncated")
        if offs[1] - offs[0] != need:
            raise _refuse(label, f"tensor {name!r} declares shape {shape} ({need:,} bytes of {dtype}) over "
                                 f"{offs[1] - offs[0]:,} bytes; refusing a file whose sizes do not match its data")
        tensors[name] = (dtype, tuple(shape))
        ranges.append((offs[0], offs[1], name))
        elements += numel
    ranges.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(ranges, ranges[1:]):
        if b1 < e0:
            raise _refuse(label, f"tensors {n0!r} and {n1!r} overlap in the file")
    return SafetensorsInfo(tensors, elements, metadata)
