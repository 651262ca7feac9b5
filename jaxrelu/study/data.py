"""Data sets for the training engine and the study. Nothing is downloaded.

* ``"digits"``: scikit-learn's 8x8 digits (1797 images, shipped inside scikit-learn),
  scaled to [0, 1] (pixel / 16, like the paper's ``ToTensor``), split with a fixed
  permutation (NumPy seed 0) into 1437 training and 360 test images.
* MNIST-format IDX files (raw or gzip) from a directory the user gives, with the real
  format checked: magic number, element type, dimensions and sizes.
* ``.npz`` files with arrays ``x_train``, ``y_train``, ``x_test``, ``y_test``.
* ``"synthetic"``: inputs uniform in [0, 1], labels from a random ReLU teacher network;
  needs no optional package.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import struct
from typing import Any

import numpy as np

from .. import _util

__all__ = [
    "Dataset",
    "load_data",
    "load_digits",
    "load_idx_dir",
    "load_npz",
    "read_idx",
    "synthetic",
]

DIGITS_TEST = 360


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

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"image_shape={self.image_shape}, classes={self.num_classes})"
        )


def _validated(name, x_train, y_train, x_test, y_test, num_classes=None) -> Dataset:
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise ValueError(
                f"{name}: {len(x)} {split} images but {len(y)} {split} labels; sizes disagree"
            )
        if len(x) == 0:
            raise ValueError(f"{name}: the {split} split is empty")
        if not np.issubdtype(np.asarray(y).dtype, np.integer):
            raise ValueError(f"{name}: {split} labels must be integers, got {np.asarray(y).dtype}")
    y_all = np.concatenate([y_train, y_test])
    if num_classes is None:
        num_classes = int(y_all.max()) + 1
    if y_all.min() < 0 or y_all.max() >= num_classes:
        raise ValueError(
            f"{name}: labels out of range: found [{int(y_all.min())}, {int(y_all.max())}], "
            f"expected [0, {num_classes - 1}]"
        )
    if num_classes < 2:
        raise ValueError(f"{name}: need at least 2 classes, found {num_classes}")
    x_train = np.asarray(x_train, np.float32)
    x_test = np.asarray(x_test, np.float32)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"{name}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ"
        )
    return Dataset(
        name,
        x_train,
        np.asarray(y_train, np.int32),
        x_test,
        np.asarray(y_test, np.int32),
        int(num_classes),
    )


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


_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (the MNIST format), raw or gzip-compressed.

    The magic number is two zero bytes, an element-type code and the number of
    dimensions; the dimensions follow as big-endian int32, then the data. Every part is
    checked and a damaged file gives a ``ValueError`` naming it.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err})") from err
    if len(raw) < 4:
        raise ValueError(f"{path}: truncated: {len(raw)} bytes, no IDX header")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _IDX_TYPES or not 1 <= ndim <= 4:
        raise ValueError(
            f"{path}: wrong magic number 0x{raw[:4].hex()} (expected 0x0000 then a type code "
            "such as 08 and 1-4 dimensions, e.g. 0x00000803 for MNIST images)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated header ({len(raw)} bytes, need {header})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:header])
    dtype = _IDX_TYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise ValueError(f"{path}: truncated: dimensions {dims} need {expected} bytes, got {got}")
    if got > expected:
        raise ValueError(f"{path}: {got - expected} unexpected trailing bytes after {dims} data")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


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
    for k in ("y_train", "y_test"):
        if arrays[k].ndim != 1:
            raise ValueError(f"{directory}: {k} must be a vector of labels, got {arrays[k].shape}")
    return _validated(
        os.path.basename(os.path.normpath(directory)) or directory,
        arrays["x_train"],
        arrays["y_train"].astype(np.int64),
        arrays["x_test"],
        arrays["y_test"].astype(np.int64),
        num_classes,
    )


def load_npz(path: str | os.PathLike, num_classes: int | None = None) -> Dataset:
    """Data from an ``.npz`` file with ``x_train``, ``y_train``, ``x_test``, ``y_test``.

    Images are used as given (expected in [0, 1]); integer images are divided by 255.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z]
            if missing:
                raise ValueError(f"{path}: missing arrays {missing}")
            a = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except ValueError as err:
        if str(err).startswith(path):
            raise
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    except (OSError, EOFError) as err:
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
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"`{name}` must be a positive integer, got {v!r}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes!r}")
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
