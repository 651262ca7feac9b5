"""Data loading: digits, synthetic, MNIST-format IDX (raw and gzip) and .npz, with every
corruption giving an error that names the file."""

import gzip
import struct

import numpy as np
import pytest

from jaxrelu.study import data


def write_idx(path, array, code=0x08, compress=False, magic=None, extra=b"", cut=0):
    array = np.asarray(array)
    header = magic if magic is not None else struct.pack(">HBB", 0, code, array.ndim)
    header += struct.pack(">" + "I" * array.ndim, *array.shape)
    raw = header + array.astype(array.dtype.newbyteorder(">")).tobytes() + extra
    if cut:
        raw = raw[:-cut]
    if compress:
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def make_mnist_dir(tmp_path, n_train=20, n_test=8, compress=False, **bad):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays.update(bad.pop("override", {}))
    for name, arr in arrays.items():
        write_idx(
            tmp_path / (name + (".gz" if compress else "")),
            arr,
            compress=compress,
            **bad.get(name, {}),
        )
    return tmp_path, arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    d, arrays = make_mnist_dir(tmp_path, compress=compress)
    ds = data.load_idx_dir(d)
    assert ds.x_train.shape == (20, 28, 28, 1) and ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(
        ds.x_train[..., 0], arrays["train-images-idx3-ubyte"] / np.float32(255)
    )
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.num_classes <= 10 and 0 <= ds.x_train.min() and ds.x_train.max() <= 1
    assert data.load_data(str(d)).x_test.shape == (8, 28, 28, 1)


def test_idx_other_element_types(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "f", a, code=0x0D)), a)
    b = np.arange(-3, 3, dtype=np.int16)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "s", b, code=0x0B)), b)


def test_idx_corruptions_name_the_file(tmp_path):
    img = np.zeros((4, 28, 28), np.uint8)
    p = write_idx(tmp_path / "wrong", img, magic=struct.pack(">HBB", 0x0102, 8, 3))
    with pytest.raises(ValueError, match="wrong magic number.*"):
        data.read_idx(p)
    p = write_idx(tmp_path / "badtype", img, magic=struct.pack(">HBB", 0, 0x07, 3))
    with pytest.raises(ValueError, match="badtype: wrong magic"):
        data.read_idx(p)
    p = write_idx(tmp_path / "short", img, cut=5)
    with pytest.raises(ValueError, match="short: truncated"):
        data.read_idx(p)
    p = write_idx(tmp_path / "long", img, extra=b"xx")
    with pytest.raises(ValueError, match="long: 2 unexpected trailing bytes"):
        data.read_idx(p)
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(tmp_path / "tiny")
    (tmp_path / "badgz").write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ValueError, match="corrupt gzip"):
        data.read_idx(tmp_path / "badgz")
    with pytest.raises(FileNotFoundError, match="nothere"):
        data.read_idx(tmp_path / "nothere")


def test_idx_directory_mismatches(tmp_path):
    d, _ = make_mnist_dir(tmp_path, override={"train-labels-idx1-ubyte": np.zeros(19, np.uint8)})
    with pytest.raises(ValueError, match="20 train images but 19 train labels"):
        data.load_idx_dir(d)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        data.load_idx_dir(tmp_path / "empty")


def test_npz_and_label_range(tmp_path):
    rng = np.random.default_rng(1)
    ok = dict(
        x_train=rng.uniform(size=(10, 5)),
        y_train=np.arange(10) % 3,
        x_test=rng.uniform(size=(4, 5)),
        y_test=np.arange(4) % 3,
    )
    np.savez(tmp_path / "ok.npz", **ok)
    ds = data.load_data(str(tmp_path / "ok.npz"))
    assert ds.num_classes == 3 and ds.image_shape == (5,)
    np.savez(tmp_path / "neg.npz", **{**ok, "y_test": np.array([0, 1, -1, 2])})
    with pytest.raises(ValueError, match="labels out of range"):
        data.load_npz(tmp_path / "neg.npz")
    with pytest.raises(ValueError, match="labels out of range"):
        data.load_npz(tmp_path / "ok.npz", num_classes=2)
    np.savez(tmp_path / "miss.npz", x_train=ok["x_train"])
    with pytest.raises(ValueError, match="missing arrays"):
        data.load_npz(tmp_path / "miss.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        data.load_npz(tmp_path / "junk.npz")


def test_builtin_sets():
    ds = data.load_digits()
    assert (len(ds.y_train), len(ds.y_test)) == (1437, 360)
    assert ds.image_shape == (8, 8, 1) and ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    again = data.load_digits()
    np.testing.assert_array_equal(ds.y_test, again.y_test)  # fixed split
    syn = data.synthetic(100, 20, dim=6, num_classes=3)
    assert syn.x_train.shape == (100, 6) and set(np.unique(syn.y_train)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="`dim`"):
        data.synthetic(dim=0)
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_data("/no/such/path")
    with pytest.raises(TypeError, match="`data`"):
        data.load_data(3)
