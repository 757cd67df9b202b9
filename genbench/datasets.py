"""The dataset registry: `load_dataset(name, ...)`, the one place a dataset name becomes a loader.

Every `conf/dataset/*.yaml` targets `genbench.datasets.load_dataset`. The loaders live with what they load
(`genbench.data`: digits, toy mixtures, MNIST-like, CIFAR-10, npz, synthetic; `genbench.teacher`: the known-truth
teacher images), and this module, above both, carves the validation split off the ones that have none of their
own, so no loader module imports another.
"""

from __future__ import annotations

from collections.abc import Sequence

from genbench.data import (
    DATASETS,
    FASHION_MNIST_FILES,
    MNIST_FILES,
    Dataset,
    load_cifar10,
    load_digits_data,
    load_mnist_like,
    load_npz,
    load_synthetic,
    load_toy2d,
    split_validation,
)
from genbench.errors import GenbenchError
from genbench.teacher import load_teacher


def load_dataset(
    name: str,
    mixture: str = "ring8",
    path: str = "",
    key: str | None = None,
    mirrors: Sequence[str] = (),
    download: bool = True,
    n_train: int = 20_000,
    n_test: int = 5_000,
    valid_fraction: float = 0.1,
    shape: Sequence[int] = (1, 28, 28),
    levels: int = 256,
    n_valid: int = 1_000,
    components_per_class: int = 4,
    smoothing: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """Load a dataset by name (the fields of `conf/dataset/<name>.yaml`), its validation split carved off (the
    teacher's is `n_valid` fresh samples of its own)."""
    if name in ("teacher", "teacher28"):
        data = load_teacher(name, n_train, n_valid, n_test, components_per_class, smoothing, seed)
    elif name == "synthetic":
        data = split_validation(load_synthetic(tuple(shape), levels, n_train, n_test), valid_fraction)
    else:
        split = load_split(name, mixture, path, key, mirrors, download, n_train, n_test)
        data = split_validation(split, valid_fraction)
    return checked_sizes(data)


def checked_sizes(data: Dataset) -> Dataset:
    """`data`, once its spec states the split sizes its tensors have: the record copies the spec, so a loader that
    forgot one (the teacher's spec said `n_valid: 0` beside 1,000 validation rows) would misreport the run."""
    held = {
        "n_train": len(data.train),
        "n_valid": 0 if data.valid is None else len(data.valid),
        "n_test": len(data.test),
    }
    stated = {k: getattr(data.spec, k) for k in held}
    if stated != held:
        raise RuntimeError(f"dataset {data.spec.name!r}: its spec states sizes {stated} but holds {held}")
    return data


def load_split(
    name: str,
    mixture: str,
    path: str,
    key: str | None,
    mirrors: Sequence[str],
    download: bool,
    n_train: int,
    n_test: int,
) -> Dataset:
    """The dataset's own train/test split, before the validation rows are carved off."""
    if name == "digits":
        return load_digits_data()
    if name == "toy2d":
        return load_toy2d(mixture, n_train, n_test)
    if name == "mnist":
        return load_mnist_like("mnist", MNIST_FILES, mirrors, download)
    if name == "fashion_mnist":
        return load_mnist_like("fashion_mnist", FASHION_MNIST_FILES, mirrors, download)
    if name == "cifar10":
        return load_cifar10(mirrors, download)
    if name == "npz":
        return load_npz(path, key)
    raise GenbenchError(f"unknown dataset {name!r}; accepted: {', '.join(DATASETS)}")
