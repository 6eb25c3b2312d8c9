"""Dataset loaders for the Kingma & Ba (2014) experiments, reading the canonical distribution formats.

Every loader takes a data directory (see :func:`resolve_data_dir`) and returns a :class:`Data`:

========================  ===================================  ====================================
loader                    expects under ``data_dir``           returns ``train.x`` / ``test.x``
========================  ===================================  ====================================
:func:`load_mnist`        ``mnist/*-ubyte.gz`` (IDX)           float32 ``(n, 784)`` in [0, 1]
:func:`load_mnist`        ``fashion-mnist/*-ubyte.gz`` (IDX)   same, with ``fashion=True``
:func:`load_imdb_bow`     ``imdb/aclImdb/{train,test}/         float32 scipy CSR ``(25000, V)``
                          labeledBow.feat`` + ``imdb.vocab``   word counts (or 0/1)
:func:`load_cifar10`      ``cifar10/`` python batches, image   float32 ``(n, 32, 32, 3)`` in [0, 1]
                          folders, or a tar archive of either
========================  ===================================  ====================================

Labels are always int32. When files are missing the loaders call :func:`fetch`: MNIST and
Fashion-MNIST are downloaded from known mirrors and verified against SHA-256 hashes; IMDB and
CIFAR-10 have no verified hash here, so for them (and whenever the download fails or
``ADAPTIX_OFFLINE=1`` is set) a :class:`FileNotFoundError` says which files to put where.

Nothing is cached: decoding is done on every call (a few seconds for the largest datasets).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import io
import math
import os
import pickle
import tarfile
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

__all__ = [
    "CIFAR10_CLASSES",
    "Data",
    "Split",
    "fetch",
    "load_cifar10",
    "load_imdb_bow",
    "load_mnist",
    "read_idx",
    "resolve_data_dir",
]

PathLike = str | os.PathLike[str]
Arrays = tuple[np.ndarray, np.ndarray]  # (x, y) of one split


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a dataset: inputs ``x`` (float32; a scipy CSR matrix for IMDB) and int32 labels ``y``."""

    x: np.ndarray | sparse.csr_matrix
    y: np.ndarray

    def __len__(self) -> int:
        return self.y.shape[0]


@dataclass(frozen=True, eq=False)
class Data:
    """A train/test pair of :class:`Split` with the number of classes and the dataset's name."""

    train: Split
    test: Split
    num_classes: int
    name: str


# --------------------------------------------------------------------------------------------
# Data directory and downloads
# --------------------------------------------------------------------------------------------


def resolve_data_dir(data_dir: PathLike | None = None) -> Path:
    """Return ``data_dir``, else ``$ADAPTIX_DATA``, else ``$XDG_CACHE_HOME/adaptix`` (``~/.cache/adaptix``).

    The directory is not created; :func:`fetch` creates what it downloads into.
    """
    if data_dir is None:
        data_dir = os.environ.get("ADAPTIX_DATA") or None
    if data_dir is None:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        data_dir = Path(cache) / "adaptix"
    return Path(data_dir).expanduser()


_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Download mirrors, tried in order. The file name is appended to each.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}

#: SHA-256 of the original files, keyed by their path relative to the data directory. Each was
#: checked against a byte-identical copy of the original release (MD5s as published by the authors).
SHA256: dict[str, str] = {
    "mnist/train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "mnist/train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "mnist/t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "mnist/t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    "fashion-mnist/train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "fashion-mnist/train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "fashion-mnist/t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "fashion-mnist/t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}

#: Datasets without a verified hash: never downloaded automatically, only these instructions.
MANUAL: dict[str, str] = {
    "imdb": (
        "Download https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz (84 MB, Maas et al. 2011) "
        "and extract it into {root}/imdb/ so that these files exist:\n"
        "  {root}/imdb/aclImdb/imdb.vocab\n"
        "  {root}/imdb/aclImdb/train/labeledBow.feat\n"
        "  {root}/imdb/aclImdb/test/labeledBow.feat"
    ),
    "cifar10": (
        "Download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz (163 MB, Krizhevsky 2009) and put "
        "it into {root}/cifar10/ (read directly, or extracted so that "
        "{root}/cifar10/cifar-10-batches-py/data_batch_1 .. data_batch_5 and test_batch exist). "
        "An image folder {root}/cifar10/<any>/{{train,test}}/<class>/*.png|jpg, or a "
        "{root}/cifar10/cifar*.tar.xz|.tar.gz archive of one, also works."
    ),
}


def _offline() -> bool:
    return os.environ.get("ADAPTIX_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


#: Seconds to wait for a mirror to answer (and between bytes): offline, each mirror fails within this.
DOWNLOAD_TIMEOUT = 10.0


def _download(url: str, dest: Path, sha256: str, timeout: float = DOWNLOAD_TIMEOUT) -> None:
    """Download ``url`` to a temporary file next to ``dest``, check its SHA-256, then move it to ``dest``.

    ``dest``'s folder is created only once the mirror has answered, so a failed download leaves
    no empty folders behind.
    """
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha256:
                raise OSError(f"sha256 mismatch for {url}: got {digest.hexdigest()}, expected {sha256}")
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def fetch(name: str, data_dir: PathLike | None = None) -> Path:
    """Make sure dataset ``name`` is present under ``data_dir`` and return its folder ``data_dir/name``.

    For ``"mnist"`` and ``"fashion-mnist"`` every missing file is downloaded from :data:`MIRRORS`
    and checked against :data:`SHA256` before it is moved into place. ``"imdb"`` and ``"cifar10"``
    have no verified hash, so they are never downloaded: a :class:`FileNotFoundError` explains
    where to get them. It is also raised when ``ADAPTIX_OFFLINE=1`` is set or every mirror fails;
    its message lists the full expected paths, their hashes and URLs.
    """
    root = resolve_data_dir(data_dir)
    if name in MANUAL:
        raise FileNotFoundError(f"{name} not found under {root}. " + MANUAL[name].format(root=root))
    if name not in MIRRORS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted([*MIRRORS, *MANUAL])}")
    missing = [rel for rel in SHA256 if rel.startswith(name + "/") and not (root / rel).is_file()]
    errors: list[str] = []
    for rel in missing:
        if _offline():
            errors = ["ADAPTIX_OFFLINE is set"]
            break
        filename = rel.split("/")[-1]
        for mirror in MIRRORS[name]:
            try:
                _download(mirror + filename, root / rel, SHA256[rel])
                break
            except OSError as e:  # URLError, HTTPError, timeouts and hash mismatches are all OSErrors
                errors.append(str(getattr(e, "reason", None) or e))
        else:
            break
    still_missing = [rel for rel in missing if not (root / rel).is_file()]
    if still_missing:
        lines = []
        for rel in still_missing:
            urls = " or ".join(m + rel.split("/")[-1] for m in MIRRORS[name])
            lines.append(f"  {root / rel}\n    sha256 {SHA256[rel]}\n    from {urls}")
        reasons = "; ".join(dict.fromkeys(errors))  # each distinct reason once, in order
        hint = "" if _offline() else "; set ADAPTIX_OFFLINE=1 to skip trying"
        raise FileNotFoundError(
            f"{name}: could not download ({reasons}{hint}). Put these files at:\n"
            + "\n".join(lines)
        )
    return root / name


# --------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST: IDX files
# --------------------------------------------------------------------------------------------

# IDX type codes (third byte of the magic number) -> big-endian numpy dtypes.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array of its stored dtype and shape.

    IDX format (http://yann.lecun.com/exdb/mnist/, section "file formats"): a 4-byte magic number
    ``0x00 0x00 <type code> <ndim>``, then ``ndim`` big-endian uint32 dimensions, then the data in
    C order. Raises :class:`ValueError` naming the file if it is not valid gzip or not valid IDX.
    """
    path = Path(path)
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt gzip data ({e})") from e
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ValueError(f"{path}: not an IDX file (magic number {raw[:4].hex()})")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX shape {shape} needs {expected} bytes, file has {len(raw)}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx_files(root: Path, name: str) -> list[Path] | None:
    """The four IDX files in ``root/name`` or ``root``, accepting ``.gz`` and uncompressed names."""
    for base in (root / name, root):
        found = []
        for gz in _MNIST_FILES:
            stem = gz.removesuffix(".gz")
            variants = (gz, stem, stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz")
            found += [p for p in (base / v for v in variants) if p.is_file()][:1]
        if len(found) == len(_MNIST_FILES):
            return found
    return None


def _to_unit(x: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 in [0, 1]."""
    return np.divide(x, 255, dtype=np.float32)


def load_mnist(data_dir: PathLike | None = None, *, fashion: bool = False, flatten: bool = True) -> Data:
    """Load MNIST (or Fashion-MNIST with ``fashion=True``) from the four original IDX files.

    Looks in ``data_dir/mnist`` (``data_dir/fashion-mnist``), then in ``data_dir`` itself, for
    ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``
    and ``t10k-labels-idx1-ubyte.gz`` (uncompressed copies are accepted too); missing files are
    fetched with :func:`fetch`. Returns 60000 train / 10000 test images, ``x`` float32 in [0, 1]
    of shape ``(n, 784)``, or ``(n, 28, 28, 1)`` with ``flatten=False``; ``y`` int32 in 0..9.

    References: http://yann.lecun.com/exdb/mnist/, https://github.com/zalandoresearch/fashion-mnist.
    """
    name = "fashion-mnist" if fashion else "mnist"
    root = resolve_data_dir(data_dir)
    paths = _find_idx_files(root, name)
    if paths is None:
        fetch(name, root)
        paths = _find_idx_files(root, name)
        assert paths is not None
    splits = []
    for image_path, label_path in (paths[:2], paths[2:]):
        images, labels = read_idx(image_path), read_idx(label_path)
        if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
            raise ValueError(
                f"{image_path}: expected uint8 images of shape (n, 28, 28), got {images.dtype} {images.shape}"
            )
        if labels.shape != images.shape[:1] or labels.max(initial=0) > 9:
            raise ValueError(f"{label_path}: expected {len(images)} labels in 0..9, got shape {labels.shape}")
        x = images.reshape(len(images), -1) if flatten else images[..., None]
        splits.append(Split(_to_unit(x), labels.astype(np.int32)))
    return Data(splits[0], splits[1], num_classes=10, name=name)


# --------------------------------------------------------------------------------------------
# IMDB: labeledBow.feat (svmlight) files of the aclImdb_v1 distribution
# --------------------------------------------------------------------------------------------


def load_imdb_bow(
    data_dir: PathLike | None = None, *, num_words: int | None = 10000, binary: bool = False
) -> Data:
    """Load the IMDB bag-of-words features of Maas et al. (2011) for the logistic regression experiment.

    Reads ``aclImdb/train/labeledBow.feat``, ``aclImdb/test/labeledBow.feat`` and ``aclImdb/imdb.vocab``
    from ``data_dir/imdb`` or ``data_dir``. Each ``.feat`` line is ``<rating> <word id>:<count> ...``
    (svmlight format, 0-based ids into ``imdb.vocab``, which is sorted by decreasing frequency), so the
    ``num_words`` most frequent words are the columns ``< num_words`` (``None`` keeps all). Labels are
    ``rating >= 7`` (positive) as int32. With ``binary=True`` counts are replaced by 0/1 presence.

    ``x`` is a float32 ``scipy.sparse.csr_matrix`` of shape ``(25000, num_words)``: the dense matrix
    would take 1 GB per split. Densify minibatches with ``x[idx].toarray()``. Rows are ordered
    positives then negatives; shuffle before minibatching.

    Reference: https://ai.stanford.edu/~amaas/data/sentiment/ (README of aclImdb_v1).
    """
    from sklearn.datasets import load_svmlight_files

    root = resolve_data_dir(data_dir)
    bases = [root / "imdb" / "aclImdb", root / "aclImdb", root]
    needed = ("imdb.vocab", "train/labeledBow.feat", "test/labeledBow.feat")
    base = next((b for b in bases if all((b / f).is_file() for f in needed)), None)
    if base is None:
        fetch("imdb", root)  # raises FileNotFoundError with instructions
    assert base is not None
    with open(base / "imdb.vocab", "rb") as f:
        vocab_size = sum(1 for _ in f)
    if num_words is not None and not 0 < num_words <= vocab_size:
        raise ValueError(f"num_words must be in 1..{vocab_size}, got {num_words}")
    files = [str(base / needed[1]), str(base / needed[2])]
    x_train, r_train, x_test, r_test = load_svmlight_files(
        files, n_features=vocab_size, zero_based=True, dtype=np.float32
    )
    splits = []
    for x, rating in ((x_train, r_train), (x_test, r_test)):
        x = x[:, :num_words].tocsr() if num_words is not None else x.tocsr()
        if binary:
            x = (x > 0).astype(np.float32)
        splits.append(Split(x, (rating >= 7).astype(np.int32)))
    return Data(splits[0], splits[1], num_classes=2, name="imdb")


# --------------------------------------------------------------------------------------------
# CIFAR-10: python pickle batches, image folders, or tar archives of either
# --------------------------------------------------------------------------------------------

#: CIFAR-10 class names; the index is the label (order of ``batches.meta`` in the original release).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2")


class _BatchUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the globals a CIFAR batch needs, so a tampered file cannot run code."""

    _reconstruct = np.ndarray((0,)).__reduce__()[0]
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy 1 pickles (the original files)
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy 2 pickles
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,  # bytes pickled by Python 3 at protocol 2
    }

    def find_class(self, module: str, name: str) -> object:
        try:
            return self._ALLOWED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _read_batch(f: IO[bytes], where: str) -> Arrays:
    """One python batch: a pickled dict with ``b'data'`` (N, 3072) uint8, channel-major, and ``b'labels'``."""
    try:
        d = _BatchUnpickler(f, encoding="bytes").load()
        data, labels = np.asarray(d[b"data"], np.uint8), np.asarray(d[b"labels"], np.int32)
    except Exception as e:
        raise ValueError(f"{where}: not a CIFAR-10 python batch ({e})") from e
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != data.shape[:1]:
        raise ValueError(f"{where}: expected data (N, 3072) and N labels, got {data.shape}, {labels.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _decode_image(f: IO[bytes], where: str) -> np.ndarray:
    from PIL import Image

    with Image.open(f) as im:
        pixels = np.asarray(im.convert("RGB"))
    if pixels.shape != (32, 32, 3):
        raise ValueError(f"{where}: expected a 32x32 image, got {pixels.shape[1]}x{pixels.shape[0]}")
    return pixels


def _first_per_class(x: np.ndarray, y: np.ndarray, limit: int | None) -> Arrays:
    """Keep the first ``limit`` examples of each class, in their original order."""
    if limit is None:
        return x, y
    keep = np.zeros(len(y), bool)
    for c in np.unique(y):
        keep[np.flatnonzero(y == c)[:limit]] = True
    return x[keep], y[keep]


def _split_from_batches(batches: dict[str, Arrays], split: str, where: Path) -> Arrays:
    missing = [b for b in _BATCHES[split] if b not in batches]
    if missing:
        raise ValueError(f"{where}: missing CIFAR-10 batches {missing}")
    xs, ys = zip(*(batches[b] for b in _BATCHES[split]))
    return np.concatenate(xs), np.concatenate(ys)


def _image_split(entries: list[tuple[int, str, np.ndarray]], where: Path, split: str) -> Arrays:
    """(label, name, pixels) entries -> arrays sorted by label, then name."""
    if not entries:
        raise ValueError(f"{where}: no {split} images found")
    entries.sort(key=lambda e: e[:2])
    return np.stack([e[2] for e in entries]), np.array([e[0] for e in entries], np.int32)


def _read_cifar_archive(path: Path, limit: int | None) -> dict[str, Arrays]:
    """Stream a tar archive holding python batches or ``.../{train,test}/<class>/<image>`` files."""
    batches: dict[str, Arrays] = {}
    images: dict[str, list[tuple[int, str, np.ndarray]]] = {"train": [], "test": []}
    counts = {split: [0] * 10 for split in images}
    batch_names = {*_BATCHES["train"], *_BATCHES["test"]}
    with tarfile.open(path, "r:*") as tf:
        for member in tf:
            parts = PurePosixPath(member.name).parts
            if not member.isfile():
                continue
            if parts[-1] in batch_names:
                batches[parts[-1]] = _read_batch(tf.extractfile(member), f"{path}:{member.name}")
            elif (
                len(parts) >= 3
                and parts[-3] in images
                and parts[-2] in CIFAR10_CLASSES
                and parts[-1].lower().endswith(_IMAGE_SUFFIXES)
            ):
                split, label = parts[-3], CIFAR10_CLASSES.index(parts[-2])
                if limit is not None and counts[split][label] >= limit:
                    continue
                pixels = _decode_image(io.BytesIO(tf.extractfile(member).read()), f"{path}:{member.name}")
                images[split].append((label, member.name, pixels))
                counts[split][label] += 1
                if limit is not None and all(n == limit for c in counts.values() for n in c):
                    break  # an image archive is only read as far as needed
    if batches:
        return {s: _first_per_class(*_split_from_batches(batches, s, path), limit) for s in _BATCHES}
    return {s: _image_split(images[s], path, s) for s in images}


def _read_cifar_folder(root: Path, limit: int | None) -> dict[str, Arrays]:
    """Read ``root/{train,test}/<class>/<image>``, the first ``limit`` files (sorted by name) per class."""
    out = {}
    for split in ("train", "test"):
        entries = []
        for label, cls in enumerate(CIFAR10_CLASSES):
            folder = root / split / cls
            if not folder.is_dir():
                raise ValueError(f"{root}: missing class folder {folder}")
            files = sorted(p for p in folder.iterdir() if p.name.lower().endswith(_IMAGE_SUFFIXES))[:limit]
            for p in files:
                with open(p, "rb") as f:
                    entries.append((label, p.name, _decode_image(f, str(p))))
        out[split] = _image_split(entries, root, split)
    return out


def _is_cifar_folder(d: Path) -> bool:
    has_splits = all((d / s).is_dir() for s in ("train", "test"))
    return has_splits and any((d / "train" / c).is_dir() for c in CIFAR10_CLASSES)


def _find_cifar10(root: Path) -> Path | None:
    """The first CIFAR-10 source in ``root/cifar10``, ``root/cifar-10`` or ``root``.

    Checked in order in each: a python batches folder, an image folder, a ``cifar*`` tar archive.
    """
    for base in (root / "cifar10", root / "cifar-10", root):
        if not base.is_dir():
            continue
        for d in (base / "cifar-10-batches-py", base):
            if (d / "test_batch").is_file():
                return d
        children = sorted(base.iterdir())
        for d in (base, *(c for c in children if c.is_dir())):
            if _is_cifar_folder(d):
                return d
        for c in children:
            name = c.name.lower()
            if c.is_file() and name.startswith("cifar") and name.endswith(_ARCHIVE_SUFFIXES):
                return c
    return None


def load_cifar10(data_dir: PathLike | None = None, *, limit_per_class: int | None = None) -> Data:
    """Load CIFAR-10 from ``data_dir/cifar10`` (or ``data_dir/cifar-10``, or ``data_dir``).

    Accepted layouts, searched in this order:

    1. the canonical python version: ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5`` and
       ``test_batch``, each a pickled dict with ``b'data'`` (N, 3072) uint8 (the 1024 red, then
       green, then blue values of a 32x32 image, row-major) and ``b'labels'`` (N ints);
    2. an image folder ``<dir>/{train,test}/<class>/*.png|jpg`` with the class names of
       :data:`CIFAR10_CLASSES` (``<dir>`` is the base folder or one of its subfolders);
    3. a tar archive named ``cifar*.tar[.gz|.xz|.bz2]`` holding either of the above, streamed
       directly (e.g. the original ``cifar-10-python.tar.gz``).

    Returns ``x`` float32 ``(n, 32, 32, 3)`` in [0, 1] and ``y`` int32 in 0..9 (50000 / 10000).
    Batches keep their original order; images are sorted by class, then file name, so shuffle
    before minibatching. ``limit_per_class`` keeps only the first images of each class per split,
    which makes quick runs fast (an image archive is then read only as far as needed).

    Reference: https://www.cs.toronto.edu/~kriz/cifar.html (Krizhevsky, 2009).
    """
    if limit_per_class is not None and limit_per_class < 1:
        raise ValueError(f"limit_per_class must be positive, got {limit_per_class}")
    root = resolve_data_dir(data_dir)
    source = _find_cifar10(root)
    if source is None:
        fetch("cifar10", root)  # raises FileNotFoundError with instructions
    assert source is not None
    if source.is_file():
        splits = _read_cifar_archive(source, limit_per_class)
    elif _is_cifar_folder(source):
        splits = _read_cifar_folder(source, limit_per_class)
    else:
        batches = {}
        for name in (*_BATCHES["train"], *_BATCHES["test"]):
            if (source / name).is_file():
                with open(source / name, "rb") as f:
                    batches[name] = _read_batch(f, str(source / name))
        splits = {
            s: _first_per_class(*_split_from_batches(batches, s, source), limit_per_class) for s in _BATCHES
        }
    train, test = (Split(_to_unit(x), y) for x, y in (splits["train"], splits["test"]))
    return Data(train, test, num_classes=10, name="cifar10")

