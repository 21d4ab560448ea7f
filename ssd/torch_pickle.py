"""Reads a PyTorch state dict file (.pth) into numpy arrays, without PyTorch.

    state = load_state_dict("resnet34-333f7ec4.pth")   # {"conv1.weight": np.ndarray, ...}

Both of torch/serialization.py's formats: zip (torch >= 1.6: `<dir>/data.pkl` and the storages in
`<dir>/data/<key>`) and legacy (pickles one after another, then each storage's count and raw bytes;
torchvision's 2017 ImageNet checkpoints). The unpickler imports nothing: every class or function
named in the file becomes an inert stand-in that only stores its arguments, so a file cannot run code.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",  # no numpy dtype: read as uint16, widened to float32
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class TorchFileError(ValueError):
    """A file that is not a readable PyTorch state dict; the message names the file."""


class _StorageType:
    def __init__(self, name):
        self.dtype = _STORAGE_DTYPES[name]

    @property
    def itemsize(self):
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize

    def array(self, raw: bytes, numel: int, path: str, key) -> np.ndarray:
        if len(raw) < numel * self.itemsize:
            raise TorchFileError(f"{path}: storage {key} is truncated ({len(raw)} of {numel * self.itemsize} bytes)")
        raw = raw[: numel * self.itemsize]
        if self.dtype == "bfloat16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32)
        return np.frombuffer(raw, dtype=np.dtype(self.dtype).newbyteorder("<"))


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    """torch._utils._rebuild_tensor(_v2): a strided view of a storage, copied into its own array."""
    if min(size, default=1) > 0:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if storage_offset < 0 or min(stride, default=0) < 0 or last >= len(storage):
            raise pickle.UnpicklingError(f"a tensor of size {tuple(size)} reaches past its storage ({len(storage)})")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)


def _rebuild_parameter(data, *unused):
    return data


class _Stub:
    """Stands in for a class or function named in the file: keeps its arguments and state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self._args = args

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slots state)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


def _reconstructor(cls, base, state):
    """copyreg._reconstructor, as pickle protocol 2 uses for plain objects (nn.Module among them)."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub)):
        raise pickle.UnpicklingError(f"cannot rebuild {cls!r}")
    return cls.__new__(cls)


def _module_state(module, prefix="", out=None):
    """A pickled nn.Module's tensors in state_dict() order: parameters, persistent buffers, children."""
    out = collections.OrderedDict() if out is None else out
    skip = getattr(module, "_non_persistent_buffers_set", None) or set()
    if isinstance(skip, _Stub):  # a pickled set() is rebuilt as a stand-in holding its items
        skip = set(*skip._args)
    for name, value in getattr(module, "_parameters", {}).items():
        if value is not None:
            out[prefix + name] = value
    for name, value in getattr(module, "_buffers", {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    for name, child in getattr(module, "_modules", {}).items():
        if child is not None:
            _module_state(child, f"{prefix}{name}.", out)
    return out


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, path, storage_loader, rebuild=None):
        super().__init__(file, encoding="utf-8")
        self._path = path
        self._load_storage = storage_loader
        self._rebuild = rebuild or _rebuild_tensor

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return self._rebuild
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if (module, name) == ("copyreg", "_reconstructor"):
            return _reconstructor
        return type(name, (_Stub,), {"__module__": module})

    def persistent_load(self, saved_id):
        typename = saved_id[0].decode("ascii") if isinstance(saved_id[0], bytes) else saved_id[0]
        if typename == "module":  # legacy files name each module class with its source code
            return saved_id[1]
        if typename != "storage":
            raise TorchFileError(f"{self._path}: unsupported persistent object {typename!r}")
        storage_type, key, _location, numel = saved_id[1:5]
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"{self._path}: unsupported storage type {storage_type!r}")
        return self._load_storage(storage_type, str(key), int(numel))


def _load_zip(path: str) -> dict:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise TorchFileError(f"{path}: a zip file without one data.pkl (not a PyTorch checkpoint)")
        prefix = pkl[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
            raise TorchFileError(f"{path}: big-endian tensors are not supported")
        storages = {}

        def load_storage(storage_type, key, numel):
            if key not in storages:
                name = f"{prefix}data/{key}"
                if name not in names:
                    raise TorchFileError(f"{path}: storage {key} is missing (truncated file?)")
                storages[key] = storage_type.array(zf.read(name), numel, path, key)
            return storages[key]

        return _Unpickler(io.BytesIO(zf.read(pkl[0])), path, load_storage).load()


def _load_legacy(path: str) -> dict:
    with open(path, "rb") as fh:
        f = io.BytesIO(fh.read())
    try:
        magic = pickle.load(f)
        protocol = pickle.load(f)
        sys_info = pickle.load(f)
    except Exception as err:
        raise TorchFileError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {err})") from None
    if magic != LEGACY_MAGIC or protocol != LEGACY_PROTOCOL:
        raise TorchFileError(f"{path}: not a PyTorch checkpoint (bad magic number or protocol)")
    if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
        raise TorchFileError(f"{path}: big-endian tensors are not supported")
    # The storages' bytes follow the object's pickle: a first pass records the storage types (and
    # builds no tensors), the data are read, and a second pass builds the tensors on them.
    start = f.tell()
    types = {}

    def record(storage_type, key, numel):
        types[key] = storage_type

    _Unpickler(f, path, record, rebuild=lambda *args: None).load()
    keys = pickle.load(f)
    storages = {}
    for key in map(str, keys):
        if key not in types:
            raise TorchFileError(f"{path}: storage {key} is listed but not used")
        header = f.read(8)
        if len(header) < 8:
            raise TorchFileError(f"{path}: truncated before the data of storage {key}")
        (count,) = struct.unpack("<q", header)
        if count < 0:
            raise TorchFileError(f"{path}: storage {key} has a negative size")
        storages[key] = types[key].array(f.read(count * types[key].itemsize), count, path, key)
    missing = sorted(set(types) - set(storages))
    if missing:
        raise TorchFileError(f"{path}: storages {missing} have no data (truncated file?)")
    f.seek(start)
    return _Unpickler(f, path, lambda storage_type, key, numel: storages[key]).load()


def load_state_dict(path: str) -> collections.OrderedDict[str, np.ndarray]:
    """The tensors of a PyTorch state dict file (or of a pickled module, keyed as its state_dict())
    as numpy arrays, keyed as in the file."""
    if not os.path.isfile(path):
        raise TorchFileError(f"{path}: no such file")
    try:
        state = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except TorchFileError:
        raise
    except Exception as err:  # any failure on a damaged file: one line naming it, not a traceback
        raise TorchFileError(f"{path}: truncated or corrupt ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if isinstance(state, _Stub) and hasattr(state, "_modules"):
        state = _module_state(state)
    if not isinstance(state, dict) or not state or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise TorchFileError(f"{path}: holds neither a state dict nor a module of tensors")
    return collections.OrderedDict(state)
