"""Datasets, their `DataSpec`, download with checksums, and dequantization.

Every image batch inside the pipeline is a float tensor `k / (L-1)` in `[0, 1]` of shape
`(B, C, H, W)`; toy 2-D data is `(B, 2)` in its own units (DESIGN.md, "Units").
Files live under the data root (`$GENBENCH_DATA`, default `~/.cache/genbench`), one folder per
dataset, with their official names, and are verified against their official md5 sums.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from genbench.errors import ChecksumError, DataMissingError, GenbenchError
from genbench.results import atomic_write

DATASETS = ("digits", "toy2d", "teacher", "teacher28", "mnist", "fashion_mnist", "cifar10", "npz")
TOY_MIXTURES = ("ring8", "grid25")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data, and what a record states about it.

    Attributes:
        name: dataset name (one of `DATASETS`).
        shape: shape of one example, `(C, H, W)` for images or `(2,)` for toy data.
        levels: number of discrete values per dimension (`L`), or None for continuous data.
        value_range: range of the values inside the pipeline.
        n_train, n_test: split sizes.
        source: where the data came from and how it was split, in words.
        num_classes: number of labels, if the data has labels.
    """

    name: str
    shape: tuple[int, ...]
    levels: int | None
    value_range: tuple[float, float]
    n_train: int
    n_test: int
    source: str
    num_classes: int | None = None

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        return cls(**{**d, "shape": tuple(d["shape"]), "value_range": tuple(d["value_range"])})


class Density(Protocol):
    """A known true density (toy mixtures, the teacher): `log_density(x)` in DESIGN units, per row of `x`."""

    def log_density(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class Dataset:
    """Train and test tensors in pipeline units, their labels, the true density where it is known, and an
    optional validation split (None where the dataset has none: held-out rows then come from the train tail)."""

    spec: DataSpec
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    density: Density | None = field(default=None, repr=False)
    valid: torch.Tensor | None = None


# ----------------------------------------------------------------------------- discrete <-> continuous


def to_levels(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer level `k` of pipeline values `x = k/(L-1)` (exact by construction)."""
    return torch.round(x * (levels - 1)).clamp(0, levels - 1).long()


def dequantize(x: torch.Tensor, levels: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform dequantization `(k + u) / L`, `u ~ U[0, 1)`: the data continuous models see."""
    k = to_levels(x, levels).to(x.dtype)
    u = torch.rand(x.shape, generator=generator, device=generator.device if generator else x.device)
    return (k + u.to(x.device)) / levels


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization (each value is the probability of a 1), as for binarized MNIST."""
    u = torch.rand(x.shape, generator=generator, device=generator.device if generator else x.device)
    return (u.to(x.device) < x).to(x.dtype)


# ----------------------------------------------------------------------------- toy 2-D mixtures


class ToyMixture:
    """An equal mixture of isotropic Gaussians in 2-D with a known log density."""

    def __init__(self, name: str) -> None:
        if name == "ring8":
            angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
            self.centers = 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
            self.sigma = 0.1
        elif name == "grid25":
            grid = torch.arange(-2, 3, dtype=torch.float64)
            self.centers = torch.cartesian_prod(grid, grid)
            self.sigma = 0.05
        else:
            raise GenbenchError(f"unknown toy mixture {name!r}; accepted: {', '.join(TOY_MIXTURES)}")
        self.name = name

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        idx = torch.randint(len(self.centers), (n,), generator=generator)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (self.centers[idx] + self.sigma * noise).float()

    def log_density(self, x: torch.Tensor) -> torch.Tensor:
        """Exact log density in nats, per row of `x` (shape `(B, 2)`)."""
        x = x.double()
        sq = ((x[:, None, :] - self.centers[None].to(x.device)) ** 2).sum(-1)  # (B, K)
        log_comp = -sq / (2 * self.sigma**2) - math.log(2 * math.pi * self.sigma**2)
        return torch.logsumexp(log_comp, dim=1) - math.log(len(self.centers))

    def entropy(self, n: int = 200_000, seed: int = 0) -> tuple[float, float]:
        """Differential entropy in nats by Monte Carlo (no closed form for a mixture), with its stderr."""
        gen = torch.Generator().manual_seed(seed)
        lp = self.log_density(self.sample(n, gen))
        return float(-lp.mean()), float(lp.std() / math.sqrt(n))


# ----------------------------------------------------------------------------- download and checksums


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str


MNIST_FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    RemoteFile("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
    RemoteFile("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
)
FASHION_MNIST_FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    RemoteFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
    RemoteFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
)
CIFAR10_FILES = (RemoteFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),)


def data_root() -> Path:
    """The data root: `$GENBENCH_DATA`, else `~/.cache/genbench`."""
    return Path(os.environ.get("GENBENCH_DATA", Path.home() / ".cache" / "genbench")).expanduser()


def md5sum(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, md5: str) -> None:
    """Refuse a file whose md5 differs from the published one."""
    got = md5sum(path)
    if got != md5:
        raise ChecksumError(f"checksum mismatch for {path}: md5 {got}, expected {md5}; delete it and download again")


def download(url: str, dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` through a temporary file; verify the md5 before the rename.

    A mismatching download is deleted and raises `ChecksumError`, so nothing unverified is left behind.
    """

    def fetch_and_verify(tmp: Path) -> None:
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = md5sum(tmp)
        if got != md5:
            raise ChecksumError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; the file was not kept")

    atomic_write(dest, fetch_and_verify)
    return dest


def fetch_files(
    folder: Path, files: Sequence[RemoteFile], mirrors: Sequence[str], allow_download: bool
) -> dict[str, Path]:
    """Find each file in `folder` (verified) or download it from the first mirror that has it.

    Returns the paths of the files that are present. Files that are missing after trying every mirror
    are left out of the result; the caller decides whether it can do without them.
    """
    present: dict[str, Path] = {}
    for f in files:
        path = folder / f.name
        if not path.exists() and allow_download:
            for mirror in mirrors:
                try:
                    download(mirror.rstrip("/") + "/" + f.name, path, f.md5)
                    break
                except (urllib.error.URLError, OSError, TimeoutError):
                    continue  # try the next mirror; a checksum mismatch is not caught here
        if path.exists():
            verify(path, f.md5)
            present[f.name] = path
    return present


def missing_message(name: str, folder: Path, files: Sequence[str]) -> str:
    return (
        f"dataset {name!r} not found offline: put {', '.join(files)} into {folder} "
        f"(or set GENBENCH_DATA to the folder that holds '{folder.name}/')"
    )


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive, refusing any member that would land outside `target`."""
    target = target.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            dest = (target / member.name).resolve()
            if not dest.is_relative_to(target) or member.issym() or member.islnk():
                raise GenbenchError(f"refusing unsafe member {member.name!r} in {archive}")
        tar.extractall(target, filter="data")


# ----------------------------------------------------------------------------- parsers


def read_idx(path: Path) -> np.ndarray:
    """Parse a (gzipped) IDX file as used by MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise GenbenchError(f"{path} is not an unsigned-byte IDX file")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)  # (N, C, H, W)
    return images, np.asarray(batch[b"labels"], dtype=np.int64)


def images_to_tensor(images: np.ndarray, levels: int = 256) -> torch.Tensor:
    """uint8 images `(N, C, H, W)` to pipeline floats `k/(L-1)`."""
    return torch.from_numpy(images.astype(np.float32) / (levels - 1))


# ----------------------------------------------------------------------------- loaders


def load_digits_data(test_size: int = 297, split_seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (values 0..16, so L = 17) with a fixed, seeded split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(split_seed).permutation(len(bunch.images))
    images = bunch.images[order].astype(np.float32)[:, None] / 16.0  # (N, 1, 8, 8)
    labels = torch.from_numpy(bunch.target[order].astype(np.int64))
    x = torch.from_numpy(images)
    n_train = len(x) - test_size
    spec = DataSpec(
        name="digits",
        shape=(1, 8, 8),
        levels=17,
        value_range=(0.0, 1.0),
        n_train=n_train,
        n_test=test_size,
        source=f"sklearn.datasets.load_digits; permutation seed {split_seed}; last {test_size} are test",
        num_classes=10,
    )
    return Dataset(spec, x[:n_train], x[n_train:], labels[:n_train], labels[n_train:])


def load_toy2d(mixture: str = "ring8", n_train: int = 20_000, n_test: int = 5_000, split_seed: int = 0) -> Dataset:
    density = ToyMixture(mixture)
    gen = torch.Generator().manual_seed(split_seed)
    train, test = density.sample(n_train, gen), density.sample(n_test, gen)
    spec = DataSpec(
        name="toy2d",
        shape=(2,),
        levels=None,
        value_range=(-3.0, 3.0),
        n_train=n_train,
        n_test=n_test,
        source=f"toy2d/{mixture}: {len(density.centers)} Gaussians, sigma {density.sigma}; sample seed {split_seed}",
    )
    return Dataset(spec, train, test, density=density)


def load_mnist_like(
    name: str, files: Sequence[RemoteFile], mirrors: Sequence[str], download_ok: bool = True
) -> Dataset:
    """MNIST or Fashion-MNIST from the data root; with only the test split present, split it 8,000 / 2,000."""
    folder = data_root() / name
    present = fetch_files(folder, files, mirrors, download_ok)
    train_names, test_names = [f.name for f in files[:2]], [f.name for f in files[2:]]
    if not all(n in present for n in test_names):
        raise DataMissingError(missing_message(name, folder, [f.name for f in files]))
    test_x, test_y = read_idx(present[test_names[0]]), read_idx(present[test_names[1]])
    if all(n in present for n in train_names):
        train_x, train_y = read_idx(present[train_names[0]]), read_idx(present[train_names[1]])
        source = f"{name}: official 60k train / 10k test from {folder}"
    else:
        cut = len(test_x) * 4 // 5  # 8,000 / 2,000 for the real 10k t10k split
        train_x, train_y, test_x, test_y = test_x[:cut], test_y[:cut], test_x[cut:], test_y[cut:]
        source = f"{name}: test split only ({folder}); first {cut:,} t10k images train, last {len(test_x):,} test"
    spec = DataSpec(name, (1, 28, 28), 256, (0.0, 1.0), len(train_x), len(test_x), source, num_classes=10)
    return Dataset(
        spec,
        images_to_tensor(train_x[:, None]),
        images_to_tensor(test_x[:, None]),
        torch.from_numpy(train_y.astype(np.int64)),
        torch.from_numpy(test_y.astype(np.int64)),
    )


def load_cifar10(mirrors: Sequence[str], download_ok: bool = True) -> Dataset:
    folder = data_root() / "cifar10"
    extracted = folder / "cifar-10-batches-py"
    if not extracted.exists():
        present = fetch_files(folder, CIFAR10_FILES, mirrors, download_ok)
        if not present:
            raise DataMissingError(missing_message("cifar10", folder, [CIFAR10_FILES[0].name]))
        tmp = Path(tempfile.mkdtemp(dir=folder))
        try:
            safe_extract(present[CIFAR10_FILES[0].name], tmp)
            os.replace(tmp / "cifar-10-batches-py", extracted)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    batches = [read_cifar_batch(extracted / f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = read_cifar_batch(extracted / "test_batch")
    train_x = np.concatenate([b[0] for b in batches])
    train_y = np.concatenate([b[1] for b in batches])
    spec = DataSpec(
        "cifar10",
        (3, 32, 32),
        256,
        (0.0, 1.0),
        len(train_x),
        len(test_x),
        f"cifar10: official 50k train / 10k test from {extracted}",
        num_classes=10,
    )
    return Dataset(
        spec, images_to_tensor(train_x), images_to_tensor(test_x), torch.from_numpy(train_y), torch.from_numpy(test_y)
    )


def load_npz(path: str, key: str | None = None, test_fraction: float = 0.1, split_seed: int = 0) -> Dataset:
    """A user's own `uint8` images, shape `(N, H, W)` or `(N, H, W, C)` with C in {1, 3}."""
    if not path:
        raise GenbenchError("dataset=npz needs dataset.path=/path/to/images.npz")
    file = Path(path).expanduser()
    if not file.exists():
        raise GenbenchError(f"dataset.path {str(file)!r} does not exist")
    with np.load(file) as arrays:
        names = list(arrays.keys())
        chosen = key or names[0]
        if chosen not in arrays:
            raise GenbenchError(f"dataset.key {chosen!r} not in {file}; arrays there: {names}")
        images = arrays[chosen]
    if images.dtype != np.uint8:
        raise GenbenchError(f"{file}[{chosen!r}] has dtype {images.dtype}; expected uint8 images (0..255)")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3) or len(images) < 2:
        raise GenbenchError(
            f"{file}[{chosen!r}] has shape {images.shape}; expected (N, H, W) or (N, H, W, C) with C in 1, 3 and N >= 2"
        )
    images = images.transpose(0, 3, 1, 2)  # (N, C, H, W)
    order = np.random.default_rng(split_seed).permutation(len(images))
    n_test = max(1, int(round(test_fraction * len(images))))
    train, test = images[order[n_test:]], images[order[:n_test]]
    spec = DataSpec(
        "npz",
        tuple(images.shape[1:]),
        256,
        (0.0, 1.0),
        len(train),
        len(test),
        f"npz: {file}[{chosen!r}]; permutation seed {split_seed}; {n_test} test",
    )
    return Dataset(spec, images_to_tensor(train), images_to_tensor(test))


def load_dataset(
    name: str,
    mixture: str = "ring8",
    path: str = "",
    key: str | None = None,
    mirrors: Sequence[str] = (),
    download: bool = True,
    n_train: int = 20_000,
    n_test: int = 5_000,
    n_valid: int = 1_000,
    components_per_class: int = 4,
    smoothing: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name (the fields of `conf/dataset/<name>.yaml`)."""
    if name == "digits":
        return load_digits_data()
    if name == "toy2d":
        return load_toy2d(mixture, n_train, n_test)
    if name in ("teacher", "teacher28"):
        from genbench.teacher import load_teacher  # teacher.py builds on this module's digits loader

        return load_teacher(name, n_train, n_valid, n_test, components_per_class, smoothing, seed)
    if name == "mnist":
        return load_mnist_like("mnist", MNIST_FILES, mirrors, download)
    if name == "fashion_mnist":
        return load_mnist_like("fashion_mnist", FASHION_MNIST_FILES, mirrors, download)
    if name == "cifar10":
        return load_cifar10(mirrors, download)
    if name == "npz":
        return load_npz(path, key)
    raise GenbenchError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}")
