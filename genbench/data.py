"""Datasets, their `DataSpec`, their official files and checksums, and dequantization.

Every image batch inside the pipeline is a float tensor `k / (L-1)` in `[0, 1]` of shape
`(B, C, H, W)`; toy 2-D data is `(B, 2)` in its own units (DESIGN.md, "Units").
Files live under the data root (`$GENBENCH_DATA`, default `~/.cache/genbench`), one folder per
dataset, with their official names, and every file is verified against its official md5 sum before it is
parsed (CIFAR-10's extracted batches too, as torchvision lists them), so nothing unverified is unpickled.
"""

from __future__ import annotations

import gzip
import math
import os
import pickle
import struct
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from genbench.download import RemoteFile, extract_into, fetch_files, verify
from genbench.errors import DataMissingError, GenbenchError

DATASETS = ("digits", "toy2d", "teacher", "teacher28", "mnist", "fashion_mnist", "cifar10", "npz", "synthetic")
TOY_MIXTURES = ("ring8", "grid25")


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its data, and what a record states about it.

    Attributes:
        name: dataset name (one of `DATASETS`).
        shape: shape of one example, `(C, H, W)` for images or `(2,)` for toy data.
        levels: number of discrete values per dimension (`L`), or None for continuous data.
        value_range: range of the values inside the pipeline.
        n_train, n_test: split sizes (the training split is what models train on, without the validation rows).
        source: where the data came from and how it was split, in words.
        num_classes: number of labels, if the data has labels.
        n_valid: validation rows carved from the original training split, never trained on: everything that
            is selected (Parzen and KDE bandwidths, the AIS observation noise) is selected on them.
    """

    name: str
    shape: tuple[int, ...]
    levels: int | None
    value_range: tuple[float, float]
    n_train: int
    n_test: int
    source: str
    num_classes: int | None = None
    n_valid: int = 0

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
    """Train, validation and test tensors in pipeline units, their labels, and the true density where it is known
    (toy mixtures, the teacher)."""

    spec: DataSpec
    train: torch.Tensor
    test: torch.Tensor
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    density: Density | None = field(default=None, repr=False)
    valid: torch.Tensor | None = None
    valid_labels: torch.Tensor | None = None


def split_validation(data: Dataset, fraction: float) -> Dataset:
    """Carve the last `fraction` of the training rows into a validation split that no model trains on.

    Every loader's training rows are already in a fixed order (a seeded permutation, or the official file
    order), so the carve is deterministic; the spec records its size and the source says how it was made.
    """
    if not 0.0 <= fraction < 1.0:
        raise GenbenchError(f"dataset.valid_fraction={fraction} must lie in [0, 1)")
    n_valid = int(round(fraction * len(data.train)))
    if n_valid == 0:
        return data
    cut = len(data.train) - n_valid
    labels = data.train_labels
    spec = replace(
        data.spec,
        n_train=cut,
        n_valid=n_valid,
        source=f"{data.spec.source}; last {n_valid} training rows held out for validation",
    )
    return replace(
        data,
        spec=spec,
        train=data.train[:cut],
        valid=data.train[cut:],
        train_labels=None if labels is None else labels[:cut],
        valid_labels=None if labels is None else labels[cut:],
    )


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


# ----------------------------------------------------------------------------- official files and checksums


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
# The extracted batches, as torchvision's CIFAR10.train_list and test_list give them: each is checked before
# it is unpickled, so a file put into (or changed in) the data root never runs as code.
CIFAR10_BATCHES = (
    RemoteFile("data_batch_1", "c99cafc152244af753f735de768cd75f"),
    RemoteFile("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
    RemoteFile("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
    RemoteFile("data_batch_4", "634d18415352ddfa80567beed471001a"),
    RemoteFile("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    RemoteFile("test_batch", "40351d587109b95175f43aff81a1287e"),
)


def data_root() -> Path:
    """The data root: `$GENBENCH_DATA`, else `~/.cache/genbench`."""
    return Path(os.environ.get("GENBENCH_DATA", Path.home() / ".cache" / "genbench")).expanduser()


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


def read_cifar_batch(path: Path, md5: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 batch (a pickle), unpickled only once its md5 is the official one."""
    verify(path, md5)
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
    train_names, test_names = [f.name for f in files[:2]], [f.name for f in files[2:]]
    present = fetch_files(folder, files, mirrors, download_ok, required=test_names)
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
        archive = CIFAR10_FILES[0].name
        present = fetch_files(folder, CIFAR10_FILES, mirrors, download_ok, required=[archive])
        extract_into(present[archive], "cifar-10-batches-py", extracted)
    lacking = [f.name for f in CIFAR10_BATCHES if not (extracted / f.name).is_file()]
    if lacking:
        raise DataMissingError(f"{extracted} lacks {', '.join(lacking)}; delete that folder to extract it again")
    *batches, (test_x, test_y) = [read_cifar_batch(extracted / f.name, f.md5) for f in CIFAR10_BATCHES]
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


def read_npz_array(file: Path, key: str | None) -> tuple[np.ndarray, str]:
    """The array `key` (default: the first) of an .npz archive, never unpickling anything; one line if not."""
    expected = "expected an .npz archive of uint8 images (np.savez(path, images=array))"
    try:
        arrays = np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as err:
        raise GenbenchError(f"dataset.path {file} is not a readable .npz archive ({err}); {expected}") from None
    if isinstance(arrays, np.ndarray):
        raise GenbenchError(f"dataset.path {file} holds a single .npy array; {expected}")
    with arrays:
        names = list(arrays.files)
        if not names:
            raise GenbenchError(f"dataset.path {file} holds no arrays; {expected}")
        chosen = key or names[0]
        if chosen not in names:
            raise GenbenchError(f"dataset.key {chosen!r} not in {file}; arrays there: {names}")
        try:
            return arrays[chosen], chosen
        except ValueError as err:  # an object array: pickled Python objects, which are never loaded
            raise GenbenchError(f"{file}[{chosen!r}] cannot be read as images ({err}); {expected}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise GenbenchError(f"{file}[{chosen!r}] is corrupt ({err})") from None


def load_npz(path: str, key: str | None = None, test_fraction: float = 0.1, split_seed: int = 0) -> Dataset:
    """A user's own `uint8` images, shape `(N, H, W)` or `(N, H, W, C)` with C in {1, 3}."""
    if not path:
        raise GenbenchError("dataset=npz needs dataset.path=/path/to/images.npz")
    file = Path(path).expanduser()
    if not file.exists():
        raise GenbenchError(f"dataset.path {str(file)!r} does not exist")
    images, chosen = read_npz_array(file, key)
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


def load_synthetic(shape: tuple[int, ...], levels: int, n_train: int, n_test: int, seed: int = 0) -> Dataset:
    """Uniformly random images of any shape and number of levels: data for what does not depend on the data
    (sampling speed against image size, device checks), never for a likelihood or a sample-quality claim."""
    if len(shape) != 3 or min(shape) < 1 or levels < 2 or min(n_train, n_test) < 1:
        raise GenbenchError(
            f"dataset=synthetic needs shape [C, H, W] of positive sizes, levels >= 2 and positive n_train, n_test; "
            f"got shape {list(shape)}, levels {levels}, n_train {n_train}, n_test {n_test}"
        )
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(0, levels, (n_train + n_test, *shape), generator=gen).float() / (levels - 1)
    source = f"synthetic: uniform random levels, shape {list(shape)}, L = {levels}, seed {seed}"
    spec = DataSpec("synthetic", shape, levels, (0.0, 1.0), n_train, n_test, source)
    return Dataset(spec, x[:n_train], x[n_train:])
