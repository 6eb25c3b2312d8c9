"""Tests for adaptix.experiments.data: tiny synthetic files in the canonical formats, plus the real
datasets when the shared offline copies are present. No test touches the network."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from adaptix.experiments import data as D

PIL = pytest.importorskip("PIL.Image")
pytest.importorskip("sklearn")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Offline by default; any urlopen call that a test did not replace fails loudly."""
    monkeypatch.setenv("ADAPTIX_OFFLINE", "1")
    monkeypatch.delenv("ADAPTIX_DATA", raising=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("tests must not access the network")

    monkeypatch.setattr(urllib.request, "urlopen", forbidden)


# ---------------------------------------------------------------------------------------------
# Builders for synthetic files
# ---------------------------------------------------------------------------------------------


def idx_bytes(a: np.ndarray, code: int = 0x08) -> bytes:
    """Serialize an array in IDX format (magic, big-endian dims, big-endian data)."""
    dtype = np.dtype(D._IDX_DTYPES[code])
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.astype(dtype).tobytes()


def make_mnist(folder: Path, n_train: int = 5, n_test: int = 3, seed: int = 0, gz: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, a in arrays.items():
        raw = idx_bytes(a)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


VOCAB = ["the", "and", "a", "of", "to", "is"]
TRAIN_FEAT = "9 0:3 1:1 4:2\n10 2:1 5:7\n1 0:1 3:2\n7 1:4\n4 4:1 5:1\n"
TEST_FEAT = "2 0:2\n8 3:1 5:3\n"


def make_imdb(root: Path) -> Path:
    base = root / "imdb" / "aclImdb"
    for split, text in (("train", TRAIN_FEAT), ("test", TEST_FEAT)):
        (base / split).mkdir(parents=True)
        (base / split / "labeledBow.feat").write_text(text)
    (base / "imdb.vocab").write_text("\n".join(VOCAB))  # like the original: no final newline
    return base


def cifar_images(n_per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images, sorted by label then index (the order the image-folder loader returns)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(10, dtype=np.int32), n_per_class)
    return rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8), y


def make_cifar_folder(root: Path, n_train: int = 2, n_test: int = 1) -> dict:
    out = {}
    for split, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        x, y = cifar_images(n, seed)
        for i, (img, label) in enumerate(zip(x, y)):
            folder = root / split / D.CIFAR10_CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            PIL.fromarray(img).save(folder / f"{i:04d}.png")
        out[split] = (x, y)
    return out


def batch_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    rows = x.transpose(0, 3, 1, 2).reshape(len(x), 3072)  # channel-major, as in the original batches
    return pickle.dumps({b"batch_label": b"synthetic", b"labels": [int(v) for v in y], b"data": rows}, protocol=2)


def make_cifar_batches(folder: Path) -> dict:
    """Five train batches of 3 rows and a test batch of 4 rows, labels cycling through the classes."""
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    xs, ys = [], []
    for i, name in enumerate([*(f"data_batch_{k}" for k in range(1, 6)), "test_batch"]):
        n = 4 if name == "test_batch" else 3
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = (np.arange(n) + 3 * i) % 10
        (folder / name).write_bytes(batch_bytes(x, y))
        xs.append(x)
        ys.append(y)
    return {"train": (np.concatenate(xs[:5]), np.concatenate(ys[:5])), "test": (xs[5], ys[5])}


def check_split(split: D.Split, x_uint8: np.ndarray, y: np.ndarray) -> None:
    assert split.x.dtype == np.float32 and split.y.dtype == np.int32
    assert split.x.shape == x_uint8.shape
    np.testing.assert_array_equal(split.x, x_uint8.astype(np.float32) / 255)
    np.testing.assert_array_equal(split.y, y)
    assert len(split) == len(y)


# ---------------------------------------------------------------------------------------------
# resolve_data_dir
# ---------------------------------------------------------------------------------------------


def test_resolve_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert D.resolve_data_dir() == tmp_path / "home" / ".cache" / "adaptix"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert D.resolve_data_dir() == tmp_path / "xdg" / "adaptix"
    monkeypatch.setenv("ADAPTIX_DATA", str(tmp_path / "env"))
    assert D.resolve_data_dir() == tmp_path / "env"
    assert D.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert D.resolve_data_dir(str(tmp_path)) == tmp_path
    assert not (tmp_path / "env").exists()  # nothing is created


# ---------------------------------------------------------------------------------------------
# IDX / MNIST
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(D._IDX_DTYPES))
def test_read_idx_roundtrip_all_types(tmp_path, code):
    a = (np.arange(24).reshape(2, 3, 4) - 5).astype(np.dtype(D._IDX_DTYPES[code]).newbyteorder("="))
    if code == 0x08:
        a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a.idx").write_bytes(idx_bytes(a, code))
    (tmp_path / "a.idx.gz").write_bytes(gzip.compress(idx_bytes(a, code)))
    for name in ("a.idx", "a.idx.gz"):
        b = D.read_idx(tmp_path / name)
        assert b.dtype == a.dtype and b.dtype.isnative
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("subdir", ["mnist", ""])
def test_load_mnist_synthetic(tmp_path, subdir):
    arrays = make_mnist(tmp_path / subdir)
    d = D.load_mnist(tmp_path)
    assert d.name == "mnist" and d.num_classes == 10
    check_split(d.train, arrays["train-images-idx3-ubyte"].reshape(5, 784), arrays["train-labels-idx1-ubyte"])
    check_split(d.test, arrays["t10k-images-idx3-ubyte"].reshape(3, 784), arrays["t10k-labels-idx1-ubyte"])


def test_load_fashion_mnist_uncompressed_unflattened(tmp_path):
    arrays = make_mnist(tmp_path / "fashion-mnist", gz=False)
    make_mnist(tmp_path / "mnist", seed=1)  # must not be picked up
    d = D.load_mnist(tmp_path, fashion=True, flatten=False)
    assert d.name == "fashion-mnist"
    check_split(d.train, arrays["train-images-idx3-ubyte"][..., None], arrays["train-labels-idx1-ubyte"])
    assert d.test.x.shape == (3, 28, 28, 1)


def test_corrupt_idx_files(tmp_path):
    make_mnist(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    good = path.read_bytes()
    raw = gzip.decompress(good)
    cases = {
        "truncated gzip": good[: len(good) // 2],
        "bad magic": gzip.compress(b"\x00\x01" + raw[2:]),
        "bad type code": gzip.compress(b"\x00\x00\x07" + raw[3:]),
        "too short": gzip.compress(raw[:-1]),
        "too long": gzip.compress(raw + b"\x00"),
        "not idx": gzip.compress(b"hello"),
    }
    for what, payload in cases.items():
        path.write_bytes(payload)
        with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz") as info:
            D.load_mnist(tmp_path)
        assert str(path) in str(info.value), what


def test_mnist_inconsistent_labels(tmp_path):
    make_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz"):
        D.load_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros((4, 28, 27), np.uint8))))
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        D.load_mnist(tmp_path)


# ---------------------------------------------------------------------------------------------
# Offline errors and (mocked) downloads
# ---------------------------------------------------------------------------------------------


def test_offline_error_names_expected_paths(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        D.load_mnist(tmp_path, fashion=True)
    message = str(info.value)
    assert "ADAPTIX_OFFLINE" in message
    for rel, sha in D.SHA256.items():
        if rel.startswith("fashion-mnist/"):
            assert str(tmp_path / rel) in message and sha in message
    assert D.MIRRORS["fashion-mnist"][0] + "train-images-idx3-ubyte.gz" in message
    assert not (tmp_path / "fashion-mnist").exists()


def test_manual_datasets_error(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        D.load_imdb_bow(tmp_path)
    assert str(tmp_path / "imdb" / "aclImdb" / "train" / "labeledBow.feat") in str(info.value)
    assert "aclImdb_v1.tar.gz" in str(info.value)
    with pytest.raises(FileNotFoundError) as info:
        D.load_cifar10(tmp_path)
    assert str(tmp_path / "cifar10" / "cifar-10-batches-py") in str(info.value)
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in str(info.value)
    with pytest.raises(ValueError, match="unknown dataset"):
        D.fetch("svhn", tmp_path)


@pytest.fixture
def fake_mirror(monkeypatch, tmp_path):
    """Serve synthetic MNIST files from a fake urlopen and register their SHA-256 hashes."""
    monkeypatch.delenv("ADAPTIX_OFFLINE")
    make_mnist(tmp_path / "server")
    served: dict[str, bytes] = {}
    requested: list[str] = []
    for p in (tmp_path / "server").iterdir():
        served[p.name] = p.read_bytes()
        monkeypatch.setitem(D.SHA256, f"mnist/{p.name}", hashlib.sha256(served[p.name]).hexdigest())

    def urlopen(url, timeout=None):
        requested.append(url)
        if not url.startswith(D.MIRRORS["mnist"][-1]):  # only the last mirror works
            raise urllib.error.URLError("unreachable")
        return io.BytesIO(served[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return served, requested


def test_fetch_downloads_and_verifies(tmp_path, fake_mirror):
    served, requested = fake_mirror
    root = tmp_path / "data"
    d = D.load_mnist(root)
    assert len(d.train) == 5 and len(d.test) == 3
    for name, content in served.items():
        assert (root / "mnist" / name).read_bytes() == content
    assert len(requested) == 4 * len(D.MIRRORS["mnist"])
    assert sorted(os.listdir(root / "mnist")) == sorted(served)  # no temporary files left
    requested.clear()
    assert D.fetch("mnist", root) == root / "mnist"
    assert requested == []  # present files are not downloaded again


def test_fetch_rejects_bad_hash(tmp_path, fake_mirror, monkeypatch):
    monkeypatch.setitem(D.SHA256, "mnist/t10k-labels-idx1-ubyte.gz", "0" * 64)
    root = tmp_path / "data"
    with pytest.raises(FileNotFoundError) as info:
        D.load_mnist(root)
    assert "sha256 mismatch" in str(info.value)
    assert str(root / "mnist" / "t10k-labels-idx1-ubyte.gz") in str(info.value)
    assert not (root / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert [p.name for p in (root / "mnist").iterdir() if p.name.startswith(".")] == []


def test_fetch_network_failure(tmp_path, monkeypatch):
    monkeypatch.delenv("ADAPTIX_OFFLINE")

    def urlopen(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    with pytest.raises(FileNotFoundError, match="no route to host") as info:
        D.fetch("mnist", tmp_path)
    assert str(tmp_path / "mnist" / "train-images-idx3-ubyte.gz") in str(info.value)


# ---------------------------------------------------------------------------------------------
# IMDB
# ---------------------------------------------------------------------------------------------


def test_load_imdb_bow_synthetic(tmp_path):
    make_imdb(tmp_path)
    d = D.load_imdb_bow(tmp_path, num_words=4)
    assert d.name == "imdb" and d.num_classes == 2
    assert d.train.x.format == "csr" and d.train.x.dtype == np.float32 and d.train.y.dtype == np.int32
    expected = [[3, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 2], [0, 4, 0, 0], [0, 0, 0, 0]]
    np.testing.assert_array_equal(d.train.x.toarray(), expected)
    np.testing.assert_array_equal(d.train.y, [1, 1, 0, 1, 0])
    np.testing.assert_array_equal(d.test.x.toarray(), [[2, 0, 0, 0], [0, 0, 0, 1]])
    np.testing.assert_array_equal(d.test.y, [0, 1])

    full = D.load_imdb_bow(tmp_path / "imdb", num_words=None, binary=True)  # aclImdb/ directly in data_dir
    assert full.train.x.shape == (5, len(VOCAB)) and full.test.x.shape == (2, len(VOCAB))
    np.testing.assert_array_equal(full.train.x.toarray()[:2], [[1, 1, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1]])
    assert full.train.x.dtype == np.float32
    with pytest.raises(ValueError, match="num_words"):
        D.load_imdb_bow(tmp_path, num_words=len(VOCAB) + 1)


# ---------------------------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------------------------


def test_cifar10_python_batches(tmp_path):
    expected = make_cifar_batches(tmp_path / "cifar10" / "cifar-10-batches-py")
    d = D.load_cifar10(tmp_path)
    assert d.name == "cifar10" and d.num_classes == 10
    check_split(d.train, *expected["train"])
    check_split(d.test, *expected["test"])
    # Layout of a row: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
    row = pickle.loads((tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1").read_bytes())[b"data"][1]
    assert d.train.x[1, 5, 7, 2] == np.float32(row[2 * 1024 + 5 * 32 + 7]) / 255

    small = D.load_cifar10(tmp_path, limit_per_class=1)
    x, y = expected["train"]
    first = [int(np.flatnonzero(y == c)[0]) for c in range(10)]
    check_split(small.train, x[sorted(first)], y[sorted(first)])
    assert len(small.test) == 4  # test labels 5..8 appear once each


def test_cifar10_numpy1_pickles_and_unsafe_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    expected = make_cifar_batches(folder)
    for p in folder.iterdir():  # rewrite as numpy-1 pickles, as in the original release
        p.write_bytes(p.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    check_split(D.load_cifar10(tmp_path).test, *expected["test"])

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(ValueError, match="test_batch.*refusing to load global"):
        D.load_cifar10(tmp_path)


def test_cifar10_image_folder(tmp_path):
    expected = make_cifar_folder(tmp_path / "cifar10" / "cifar10_png")
    d = D.load_cifar10(tmp_path)
    check_split(d.train, *expected["train"])
    check_split(d.test, *expected["test"])
    small = D.load_cifar10(tmp_path / "cifar10" / "cifar10_png", limit_per_class=1)
    check_split(small.train, expected["train"][0][::2], expected["train"][1][::2])
    check_split(small.test, *expected["test"])


@pytest.mark.parametrize("mode", ["w:xz", "w:gz"])
def test_cifar10_image_archive(tmp_path, mode):
    expected = make_cifar_folder(tmp_path / "src" / "cifar10_png", n_train=3, n_test=2)
    archive = tmp_path / "data" / "cifar10" / f"cifar10_png.tar.{mode[2:]}"
    archive.parent.mkdir(parents=True)
    with tarfile.open(archive, mode) as tf:
        tf.add(tmp_path / "src" / "cifar10_png", arcname="cifar10_png")
    d = D.load_cifar10(tmp_path / "data")
    check_split(d.train, *expected["train"])
    check_split(d.test, *expected["test"])
    small = D.load_cifar10(tmp_path / "data", limit_per_class=2)
    x, y = expected["train"]
    keep = np.arange(len(y)) % 3 < 2
    check_split(small.train, x[keep], y[keep])
    check_split(small.test, *expected["test"])


def test_cifar10_python_archive(tmp_path):
    expected = make_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    (tmp_path / "data").mkdir()
    with tarfile.open(tmp_path / "data" / "cifar-10-python.tar.gz", "w:gz") as tf:
        tf.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    d = D.load_cifar10(tmp_path / "data")
    check_split(d.train, *expected["train"])
    check_split(d.test, *expected["test"])


def test_cifar10_bad_images(tmp_path):
    make_cifar_folder(tmp_path)
    bad = tmp_path / "train" / "cat" / "9999.png"
    PIL.new("RGB", (16, 16)).save(bad)
    with pytest.raises(ValueError, match="9999.png.*32x32"):
        D.load_cifar10(tmp_path)
    bad.unlink()
    for p in (tmp_path / "test" / "frog").iterdir():
        p.unlink()
    (tmp_path / "test" / "frog").rmdir()
    with pytest.raises(ValueError, match="frog"):
        D.load_cifar10(tmp_path)
    with pytest.raises(ValueError, match="limit_per_class"):
        D.load_cifar10(tmp_path, limit_per_class=0)


# ---------------------------------------------------------------------------------------------
# Real data (the shared offline copies), skipped when absent
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_data() -> Path:
    path = Path(os.environ.get("ADAPTIX_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path} (set ADAPTIX_SHARED_DATA)")
    return path


@pytest.mark.parametrize(
    "fashion, mean, train_counts",
    [
        (False, 0.130660, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
        (True, 0.286041, [6000] * 10),
    ],
)
def test_real_mnist(shared_data, fashion, mean, train_counts):
    sub = "fashion-mnist" if fashion else "mnist"
    if not (shared_data / sub).is_dir():
        pytest.skip(f"{shared_data / sub} not found")
    d = D.load_mnist(shared_data, fashion=fashion)
    assert d.train.x.shape == (60000, 784) and d.test.x.shape == (10000, 784)
    assert d.train.x.dtype == np.float32 and d.train.y.dtype == np.int32
    assert 0.0 == d.train.x.min() and d.train.x.max() == 1.0
    assert d.train.x.mean(dtype=np.float64) == pytest.approx(mean, abs=1e-6)
    np.testing.assert_array_equal(np.bincount(d.train.y), train_counts)
    assert len(np.bincount(d.test.y)) == 10


def test_real_imdb(shared_data):
    if not (shared_data / "imdb" / "aclImdb").is_dir():
        pytest.skip("imdb/aclImdb not found")
    d = D.load_imdb_bow(shared_data)
    for split in (d.train, d.test):
        assert split.x.shape == (25000, 10000) and split.x.format == "csr" and split.x.dtype == np.float32
        assert split.y.sum() == 12500
        assert split.y[:12500].all() and not split.y[12500:].any()  # positives first
    assert d.train.x[0, 0] == 9  # first line of train/labeledBow.feat: "9 0:9 1:1 ..."


def test_real_cifar10_subset(shared_data):
    if not (shared_data / "cifar10").is_dir():
        pytest.skip("cifar10 not found")
    d = D.load_cifar10(shared_data, limit_per_class=20)
    assert d.train.x.shape == (200, 32, 32, 3) and d.test.x.shape == (200, 32, 32, 3)
    assert d.train.x.dtype == np.float32 and d.train.y.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(d.train.y), [20] * 10)
    np.testing.assert_array_equal(np.bincount(d.test.y), [20] * 10)
    assert 0.0 <= d.train.x.min() and d.train.x.max() <= 1.0
    assert 0.35 < d.train.x.mean(dtype=np.float64) < 0.6
