"""Data loading: digits, synthetic, MNIST-format IDX (raw and gzip) and .npz; every
corruption and every broken limit is a one-line error naming the file, raised before
anything large is read (the memory-heavy probes run in a subprocess under RLIMIT_AS)."""

import gzip
import struct
import subprocess
import sys
import textwrap

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
        "train-labels-idx1-ubyte": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) % 10).astype(np.uint8),
    }
    arrays.update(bad.pop("override", {}))
    for name, arr in arrays.items():
        write_idx(tmp_path / (name + (".gz" if compress else "")), arr, compress=compress)
    return tmp_path, arrays


def npz(path, **arrays):
    rng = np.random.default_rng(1)
    ok = dict(
        x_train=rng.uniform(size=(10, 5)),
        y_train=np.arange(10) % 3,
        x_test=rng.uniform(size=(4, 5)),
        y_test=np.arange(4) % 3,
    )
    np.savez(path, **{**ok, **arrays})
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, compress):
    d, arrays = make_mnist_dir(tmp_path, compress=compress)
    ds = data.load_idx_dir(d)
    assert ds.x_train.shape == (20, 28, 28, 1) and ds.x_train.dtype == np.float32
    np.testing.assert_array_equal(
        ds.x_train[..., 0], arrays["train-images-idx3-ubyte"] / np.float32(255)
    )
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert ds.num_classes == 10
    assert data.load_data(str(d)).x_test.shape == (8, 28, 28, 1)


def test_idx_other_element_types(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "f", a, code=0x0D)), a)
    b = np.arange(-3, 3, dtype=np.int16)
    np.testing.assert_array_equal(data.read_idx(write_idx(tmp_path / "s", b, code=0x0B)), b)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_corruptions_name_the_file(tmp_path, compress):
    img = np.zeros((4, 28, 28), np.uint8)
    kw = {"compress": compress}
    cases = [
        (dict(magic=struct.pack(">HBB", 0x0102, 8, 3)), "wrong magic number 0x01020803"),
        (dict(magic=struct.pack(">HBB", 0, 0x07, 3)), "wrong magic"),
        (dict(cut=5), "truncated: dimensions"),
        (dict(extra=b"xx"), "2 unexpected trailing bytes"),
    ]
    for i, (bad, msg) in enumerate(cases):
        p = write_idx(tmp_path / f"bad{i}", img, **kw, **bad)
        with pytest.raises(ValueError, match=f"bad{i}: .*{msg}"):
            data.read_idx(p)
    (tmp_path / "tiny").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="tiny: truncated: 2 bytes"):
        data.read_idx(tmp_path / "tiny")
    (tmp_path / "badgz").write_bytes(b"\x1f\x8b" + b"garbage")
    with pytest.raises(ValueError, match="badgz: corrupt gzip"):
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


def test_idx_label_200_is_refused_not_201_classes(tmp_path):
    labels = (np.arange(20) % 10).astype(np.uint8)
    labels[3] = 200
    d, _ = make_mnist_dir(tmp_path, override={"train-labels-idx1-ubyte": labels})
    with pytest.raises(ValueError, match="every class present; label 200 occurs but 190"):
        data.load_idx_dir(d)


@pytest.mark.parametrize(
    "arrays, msg",
    [
        ({"y_test": np.array([0, 1, -1, 2])}, "labels out of range: found -1"),
        ({"y_train": np.arange(10) % 3 + 0.0}, "train labels must be integers, got dtype float64"),
        ({"y_train": (np.arange(10) % 3)[:, None]}, r"1-D vector .* shape \(10, 1\)"),
        ({"y_train": np.eye(3)[np.arange(10) % 3].astype(int)}, "one-hot labels"),
        ({"x_train": np.full((10, 5), np.nan)}, "train images hold 50 non-finite values"),
        ({"x_test": np.array([[np.inf] * 5] * 4)}, "test images hold 20 non-finite"),
        ({"y_train": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 10**9])}, "at most 1000 classes"),
        ({"x_test": np.zeros((4, 6))}, r"train images \(5,\) and test images \(6,\) differ"),
        ({"y_train": np.zeros(10, int), "y_test": np.zeros(4, int)}, "at least 2 classes"),
    ],
)
def test_npz_label_and_pixel_rules(tmp_path, arrays, msg):
    p = npz(tmp_path / "d.npz", **arrays)
    with pytest.raises(ValueError, match=f"d.npz: .*{msg}"):
        data.load_npz(p)


def test_npz_reads_and_refuses(tmp_path):
    ds = data.load_data(str(npz(tmp_path / "ok.npz")))
    assert ds.num_classes == 3 and ds.image_shape == (5,) and ds.y_train.dtype == np.int32
    with pytest.raises(ValueError, match="labels out of range"):
        data.load_npz(tmp_path / "ok.npz", num_classes=2)
    np.savez(tmp_path / "miss.npz", x_train=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="missing arrays"):
        data.load_npz(tmp_path / "miss.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz: not a readable .npz"):
        data.load_npz(tmp_path / "junk.npz")
    obj = np.array([{"a": 1}] * 10, dtype=object)
    np.savez(tmp_path / "pickle.npz", x_train=obj, y_train=np.arange(10) % 3,
             x_test=np.zeros((4, 5)), y_test=np.arange(4) % 3)  # fmt: skip
    with pytest.raises(ValueError, match="pickle.npz: x_train holds Python objects"):
        data.load_npz(tmp_path / "pickle.npz")


def test_fingerprint_follows_contents_not_name(tmp_path):
    a = data.load_npz(npz(tmp_path / "a.npz"))
    b = data.load_npz(npz(tmp_path / "b.npz"))
    assert a.name != b.name and a.fingerprint == b.fingerprint
    x = np.random.default_rng(1).uniform(size=(10, 5))
    x[0, 0] += 1e-6  # one pixel changes
    c = data.load_npz(npz(tmp_path / "a2.npz", x_train=x))
    assert c.fingerprint != a.fingerprint and len(c.fingerprint) == 64


PROBES = textwrap.dedent(
    """
    import gzip, os, resource, struct, sys, zipfile, zlib
    import numpy as np
    from jaxrelu.study import data, limits
    tmp = sys.argv[1]
    # a gzip "bomb": a 100-image MNIST header, then 1 GiB of zeros in 64 identical members
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = z.compress(bytes(16 << 20)) + z.flush()
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = struct.pack(">HBBIII", 0, 8, 3, 100, 28, 28)
    first = z.compress(head + bytes(16 << 20)) + z.flush()
    with open(os.path.join(tmp, "bomb.gz"), "wb") as fh:
        fh.write(first + member * 63)
    # a sparse IDX file declaring 20,000 x 1000 x 1000 bytes
    with open(os.path.join(tmp, "sparse"), "wb") as fh:
        fh.write(struct.pack(">HBBIII", 0, 8, 3, 20000, 1000, 1000))
        fh.truncate(16 + 20000 * 1000 * 1000)
    # an .npz whose x_train declares 2**40 float32 (4 TiB)
    hdr = {"descr": "<f4", "fortran_order": False, "shape": (2**40,)}
    import io
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, hdr)
    with zipfile.ZipFile(os.path.join(tmp, "huge.npz"), "w") as zf:
        zf.writestr("x_train.npy", buf.getvalue() + bytes(64))
        for k in ("y_train", "x_test", "y_test"):
            b = io.BytesIO(); np.save(b, np.zeros(3, int)); zf.writestr(k + ".npy", b.getvalue())
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
    limit = vm * 1024 + (256 << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    assert limits.available_bytes() <= 256 << 20, limits.available_bytes()
    for name, fn in (("bomb.gz", data.read_idx), ("sparse", data.read_idx),
                     ("huge.npz", data.load_npz)):
        try:
            fn(os.path.join(tmp, name))
        except ValueError as err:
            print(name, "|", str(err).splitlines()[0], "|", len(str(err).splitlines()))
    """
)


def test_memory_heavy_inputs_fail_early_under_rlimit(tmp_path):
    script = tmp_path / "probes.py"
    script.write_text(PROBES)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = dict(line.split(" | ", 1) for line in proc.stdout.strip().splitlines())
    assert set(lines) == {"bomb.gz", "sparse", "huge.npz"}
    assert "unexpected trailing bytes after (100, 28, 28)" in lines["bomb.gz"]
    assert "declares 18.6 GiB" in lines["sparse"] and "more than the limit" in lines["sparse"]
    assert "x_train (1099511627776,) float32 declares 4.0 TiB" in lines["huge.npz"]
    assert all(v.endswith(" | 1") for v in lines.values())  # one line each


def test_builtin_sets():
    ds = data.load_digits()
    assert (len(ds.y_train), len(ds.y_test)) == (1437, 360)
    assert ds.image_shape == (8, 8, 1) and ds.x_train.max() == 1.0 and ds.x_train.min() == 0.0
    assert ds.describe()["sha256"] == data.load_digits().fingerprint  # fixed split
    syn = data.synthetic(100, 20, dim=6, num_classes=3)
    assert syn.x_train.shape == (100, 6) and set(np.unique(syn.y_train)) <= {0, 1, 2}
    with pytest.raises(ValueError, match="`dim`"):
        data.synthetic(dim=0)
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_data("/no/such/path")
    with pytest.raises(TypeError, match="`data`"):
        data.load_data(3)
    with pytest.raises(ValueError, match="not a directory of IDX files or an .npz"):
        data.load_data(__file__)


def test_gzip_stream_not_decompressed_past_the_header(tmp_path, monkeypatch):
    """The reader asks the gzip stream for the declared size plus a probe, never more
    (counted by wrapping GzipFile.read, which readinto goes through)."""
    img = np.zeros((4, 28, 28), np.uint8)
    p = write_idx(tmp_path / "x.gz", img, compress=True, extra=bytes(10 << 20))
    asked = []
    real_read = gzip.GzipFile.read

    def read(self, size=-1):
        asked.append(size)
        return real_read(self, size)

    monkeypatch.setattr(gzip.GzipFile, "read", read)
    with pytest.raises(ValueError, match="at least 65536 unexpected trailing bytes"):
        data.read_idx(p)
    assert -1 not in asked and sum(asked) <= 16 + 4 * 28 * 28 + 65536
