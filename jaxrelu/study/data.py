"""Data sets for the training engine and the study. Nothing is downloaded.

* ``"digits"``: scikit-learn's 8x8 digits (1797 images, shipped inside scikit-learn),
  scaled to [0, 1] (pixel / 16, like the paper's ``ToTensor``), split with a fixed
  permutation (NumPy seed 0) into 1437 training and 360 test images.
* MNIST-format IDX files (raw or gzip) from a directory the user gives.
* ``.npz`` files with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.
* ``"synthetic"``: inputs uniform in [0, 1], labels from a random ReLU teacher network;
  needs no optional package.

Limits, checked before anything large is allocated or decompressed (each broken rule is a
one-line ``ValueError`` naming the file):

* IDX: the header (magic number, element type, 1-4 dimensions) is read first; the size it
  declares must fit :data:`MAX_DATA_BYTES` and the memory available; a raw file's size
  must match it exactly; gzip data is decompressed as a stream and never beyond the
  declared size (plus one byte, to detect trailing data).
* ``.npz``: each array's header (shape, dtype) is read before its data, with the same
  size limit; pickled objects are refused.
* Labels: a 1-D vector of integers (not floats, not one-hot) in ``[0, K)`` with
  ``K <= MAX_CLASSES``; when ``K`` is inferred, every class in ``[0, K)`` must occur.
* Images: finite numbers; train and test images of the same shape.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import os
import struct
import zipfile
import zlib
from typing import IO, Any

import numpy as np

from .. import _util, _validate
from . import limits

__all__ = [
    "MAX_CLASSES",
    "MAX_DATA_BYTES",
    "Dataset",
    "load_data",
    "load_digits",
    "load_idx_dir",
    "load_npz",
    "read_idx",
    "synthetic",
]

DIGITS_TEST = 360
MAX_CLASSES = 1000
"""Most classes a data set may have (ImageNet's 1000): a stray large label would otherwise
make a huge output layer."""
MAX_DATA_BYTES = 16 * 2**30
"""Largest array a data file may declare (16 GiB; MNIST's images are 47 MB)."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set held as NumPy arrays.

    Attributes:
        name: where it came from.
        x_train, x_test: images as float32 in [0, 1], shape ``(n, *image_shape)``.
        y_train, y_test: int32 labels in ``[0, num_classes)``.
        num_classes: number of classes.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image: ``(H, W, C)`` for images, ``(D,)`` for flat features."""
        return tuple(self.x_train.shape[1:])

    @property
    def n_features(self) -> int:
        return int(np.prod(self.image_shape))

    @functools.cached_property
    def fingerprint(self) -> str:
        """A SHA-256 of the contents (arrays, shapes, dtypes, number of classes), not of
        the name: two data sets with equal fingerprints give equal results."""
        h = hashlib.sha256()
        h.update(f"classes={self.num_classes}".encode())
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            a = np.ascontiguousarray(a)
            h.update(f"|{a.dtype.str}{a.shape}|".encode())
            h.update(a.tobytes())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary: name, sizes, image shape, classes and fingerprint."""
        return {
            "name": self.name,
            "train": len(self.y_train),
            "test": len(self.y_test),
            "image_shape": list(self.image_shape),
            "classes": self.num_classes,
            "sha256": self.fingerprint,
        }

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"image_shape={self.image_shape}, classes={self.num_classes})"
        )


def _check_labels(name: str, split: str, y: np.ndarray) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        hint = " (one-hot labels? pass np.argmax(y, axis=1))" if y.ndim == 2 else ""
        raise ValueError(
            f"{name}: {split} labels must be a 1-D vector of class indices, got shape "
            f"{y.shape}{hint}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: {split} labels must be integers, got dtype {y.dtype}")
    return y


def _check_images(name: str, split: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{name}: {split} images must be numbers, got dtype {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"{name}: {split} images must be (n, features...), got shape {x.shape}")
    x = np.asarray(x, np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError(
            f"{name}: {split} images hold {int(np.sum(~np.isfinite(x)))} non-finite values "
            "(NaN or inf); pixels must be finite"
        )
    return x


def _num_classes(name: str, y_all: np.ndarray, num_classes: int | None) -> int:
    lo, hi = int(y_all.min()), int(y_all.max())
    if lo < 0:
        raise ValueError(f"{name}: labels out of range: found {lo}; labels start at 0")
    if num_classes is None:
        if hi >= MAX_CLASSES:
            raise ValueError(
                f"{name}: labels out of range: found {hi}; at most {MAX_CLASSES} classes "
                f"(labels 0..{MAX_CLASSES - 1})"
            )
        present = np.zeros(hi + 1, bool)
        present[y_all] = True
        if not present.all():
            gaps = np.flatnonzero(~present)
            raise ValueError(
                f"{name}: labels must be 0..K-1 with every class present; label {hi} occurs "
                f"but {len(gaps)} smaller ones never do (first: {int(gaps[0])})"
            )
        num_classes = hi + 1
    elif hi >= num_classes:
        raise ValueError(
            f"{name}: labels out of range: found [{lo}, {hi}], expected [0, {num_classes - 1}]"
        )
    if num_classes < 2:
        raise ValueError(f"{name}: need at least 2 classes, found {num_classes}")
    return int(num_classes)


def _validated(name, x_train, y_train, x_test, y_test, num_classes=None) -> Dataset:
    y_train = _check_labels(name, "train", y_train)
    y_test = _check_labels(name, "test", y_test)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise ValueError(
                f"{name}: {len(x)} {split} images but {len(y)} {split} labels; sizes disagree"
            )
        if len(x) == 0:
            raise ValueError(f"{name}: the {split} split is empty")
    x_train = _check_images(name, "train", x_train)
    x_test = _check_images(name, "test", x_test)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"{name}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ"
        )
    k = _num_classes(name, np.concatenate([y_train, y_test]).astype(np.int64), num_classes)
    return Dataset(name, x_train, y_train.astype(np.int32), x_test, y_test.astype(np.int32), k)


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits, scaled to [0, 1], fixed 1437/360 train/test split.

    Images have shape ``(8, 8, 1)``. Needs scikit-learn (``pip install "jaxrelu[study]"``).
    """
    datasets = _util.require("sklearn.datasets", "study", "the built-in digits data set")
    bunch = datasets.load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 8, 8, 1)
    y = bunch.target.astype(np.int32)
    perm = np.random.RandomState(0).permutation(len(y))
    test, train = perm[:DIGITS_TEST], perm[DIGITS_TEST:]
    return _validated("digits", x[train], y[train], x[test], y[test], 10)


# ------------------------------------------------------------------------------- IDX

_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_TRAILING_PROBE = 1 << 16


def _check_size(path: str, what: str, nbytes: int, decoded: int) -> None:
    """Refuses a declared array whose decoded (float32) size is too large."""
    cap = min(MAX_DATA_BYTES, limits.available_bytes() // 2)
    if nbytes > MAX_DATA_BYTES or decoded > cap:
        raise ValueError(
            f"{path}: {what} declares {limits.fmt_bytes(nbytes)} of data "
            f"({limits.fmt_bytes(decoded)} as float32), more than the limit of "
            f"{limits.fmt_bytes(cap)} (MAX_DATA_BYTES or half the available memory)"
        )


def _read_exactly(fh: IO[bytes], n: int) -> np.ndarray:
    buf = np.empty(n, np.uint8)
    view, got = memoryview(buf.data), 0
    while got < n:
        k = fh.readinto(view[got:])  # type: ignore[attr-defined]
        if not k:
            break
        got += k
    return buf[:got]


def _idx_header(path: str, fh: IO[bytes]) -> tuple[np.dtype, tuple[int, ...], int]:
    head = fh.read(4)
    if len(head) < 4:
        raise ValueError(f"{path}: truncated: {len(head)} bytes, no IDX header")
    zero, code, ndim = struct.unpack(">HBB", head)
    if zero != 0 or code not in _IDX_TYPES or not 1 <= ndim <= 4:
        raise ValueError(
            f"{path}: wrong magic number 0x{head.hex()} (expected 0x0000 then a type code "
            "such as 08 and 1-4 dimensions, e.g. 0x00000803 for MNIST images)"
        )
    raw_dims = fh.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(
            f"{path}: truncated header ({4 + len(raw_dims)} bytes, need {4 + 4 * ndim})"
        )
    dims = struct.unpack(">" + "I" * ndim, raw_dims)
    return _IDX_TYPES[code], dims, 4 + 4 * ndim


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (the MNIST format), raw or gzip-compressed.

    The magic number is two zero bytes, an element-type code and the number of
    dimensions; the dimensions follow as big-endian int32, then the data. The header is
    read and checked (size limits included) before the data; gzip data is streamed and
    never decompressed beyond the size the header declares. A damaged file gives a
    ``ValueError`` naming it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        fh: Any = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        try:
            dtype, dims, header = _idx_header(path, fh)
            expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            _check_size(path, f"the header {dims}", expected, expected // dtype.itemsize * 4)
            if not compressed:
                got = os.fstat(raw.fileno()).st_size - header
                if got < expected:
                    raise ValueError(
                        f"{path}: truncated: dimensions {dims} need {expected} bytes, got {got}"
                    )
                if got > expected:
                    raise ValueError(
                        f"{path}: {got - expected} unexpected trailing bytes after {dims} data"
                    )
            data = _read_exactly(fh, expected)
            if len(data) < expected:
                raise ValueError(
                    f"{path}: truncated: dimensions {dims} need {expected} bytes, got {len(data)}"
                )
            extra = len(fh.read(_TRAILING_PROBE)) if compressed else 0
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err})") from err
        finally:
            if compressed:
                fh.close()
    if extra:
        more = "" if extra < _TRAILING_PROBE else "at least "
        raise ValueError(f"{path}: {more}{extra} unexpected trailing bytes after {dims} data")
    return data.view(dtype).reshape(dims).astype(dtype.newbyteorder("="))


_MNIST_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find(directory: str, stems: tuple[str, ...]) -> str:
    for stem in stems:
        for suffix in ("", ".gz"):
            p = os.path.join(directory, stem + suffix)
            if os.path.isfile(p):
                return p
    raise FileNotFoundError(
        f"{directory}: no {stems[0]}[.gz] (MNIST-format directories hold train-images-idx3-"
        "ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)"
    )


def load_idx_dir(directory: str | os.PathLike, num_classes: int | None = None) -> Dataset:
    """MNIST-format data from a directory of the four standard IDX files (raw or .gz).

    Images of unsigned bytes are scaled to [0, 1] (pixel / 255) and get a channel axis.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"data directory not found: {directory}")
    arrays = {k: read_idx(_find(directory, v)) for k, v in _MNIST_NAMES.items()}
    for k in ("x_train", "x_test"):
        if arrays[k].ndim != 3:
            raise ValueError(
                f"{directory}: {k} must be (n, rows, cols) images, got {arrays[k].shape}"
            )
        scale = 255.0 if arrays[k].dtype == np.uint8 else 1.0
        arrays[k] = (arrays[k].astype(np.float32) / scale)[..., None]
    return _validated(
        os.path.basename(os.path.normpath(directory)) or directory,
        arrays["x_train"],
        arrays["y_train"],
        arrays["x_test"],
        arrays["y_test"],
        num_classes,
    )


# ------------------------------------------------------------------------------- npz

_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_array(path: str, zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """One array of an ``.npz``, its header checked before its data is read."""
    info = zf.getinfo(key + ".npy")
    with zf.open(info) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        if dtype.hasobject:
            raise ValueError(f"{path}: {key} holds Python objects; only numeric arrays are read")
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * dtype.itemsize
        _check_size(path, f"{key} {tuple(shape)} {dtype}", nbytes, count * 4)
        if info.file_size < nbytes:
            raise ValueError(
                f"{path}: {key} is truncated: {tuple(shape)} {dtype} needs {nbytes} bytes"
            )
        data = _read_exactly(fh, nbytes)
    if len(data) < nbytes:
        raise ValueError(f"{path}: {key} is truncated: {tuple(shape)} {dtype} needs {nbytes} bytes")
    order = "F" if fortran else "C"
    return data.view(dtype).reshape(tuple(shape), order=order)  # type: ignore[call-overload]


def load_npz(path: str | os.PathLike, num_classes: int | None = None) -> Dataset:
    """Data from an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Images are used as given (expected in [0, 1]); integer images are divided by 255.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            names = set(zf.namelist())
            missing = [k for k in _NPZ_KEYS if k + ".npy" not in names]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            a = {k: _npz_array(path, zf, k) for k in _NPZ_KEYS}
    except ValueError as err:
        if str(err).startswith(path):
            raise
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    for k in ("x_train", "x_test"):
        if np.issubdtype(a[k].dtype, np.integer):
            a[k] = a[k].astype(np.float32) / 255.0
        if a[k].ndim == 3:
            a[k] = a[k][..., None]
    return _validated(
        os.path.basename(path), a["x_train"], a["y_train"], a["x_test"], a["y_test"], num_classes
    )


def synthetic(
    n_train: int = 2048,
    n_test: int = 512,
    dim: int = 64,
    num_classes: int = 10,
    seed: int = 0,
) -> Dataset:
    """Inputs uniform in [0, 1]^dim, labels = argmax of a random ReLU teacher network."""
    for name, v in (("n_train", n_train), ("n_test", n_test), ("dim", dim)):
        _validate.positive_int(v, name, hi=10**7)
    _validate.integer(num_classes, "num_classes", lo=2, hi=MAX_CLASSES)
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(dim, 64)) / np.sqrt(dim)
    b1 = rng.normal(size=64) * 0.5
    w2 = rng.normal(size=(64, num_classes)) / 8.0
    x = rng.uniform(size=(n_train + n_test, dim)).astype(np.float32)
    y = np.argmax(np.maximum(x @ w1 + b1 - 0.5, 0) @ w2, axis=1)
    return _validated(
        f"synthetic-{dim}d", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes
    )


def load_data(spec: Any = "digits") -> Dataset:
    """``"digits"``, ``"synthetic"``, a directory of MNIST IDX files, a ``.npz`` file, or
    a :class:`Dataset` (returned as is)."""
    if isinstance(spec, Dataset):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"`data` must be 'digits', 'synthetic', a path or a Dataset, got {spec!r}")
    s = os.fspath(spec)
    if s == "digits":
        return load_digits()
    if s == "synthetic":
        return synthetic()
    if os.path.isdir(s):
        return load_idx_dir(s)
    if os.path.isfile(s):
        if s.endswith(".npz"):
            return load_npz(s)
        raise ValueError(f"{s}: not a directory of IDX files or an .npz file")
    raise FileNotFoundError(f"data path not found: {s} (use 'digits', 'synthetic' or a path)")
