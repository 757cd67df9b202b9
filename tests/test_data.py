"""Datasets: specs and splits, toy densities, npz files, CIFAR-10 batches verified before they are unpickled.

Downloads, mirrors and tar extraction are tested in test_download.py.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA
from test_download import fake_cifar

from genbench import data, datasets
from genbench.errors import ChecksumError, GenbenchError

# ----------------------------------------------------------------------------- embedded data


def test_digits_spec_split_and_levels() -> None:
    ds = data.load_digits_data()
    assert ds.spec.shape == (1, 8, 8) and ds.spec.levels == 17
    assert len(ds.train) == ds.spec.n_train == 1500 and len(ds.test) == ds.spec.n_test == 297
    k = ds.train * 16
    assert torch.equal(k, torch.round(k)) and k.min() == 0 and k.max() == 16  # values are exactly k/(L-1)
    assert torch.equal(data.load_digits_data().test, ds.test)  # the split is fixed


@pytest.mark.parametrize("name", data.TOY_MIXTURES)
def test_toy_density_integrates_to_one_and_entropy_matches_separated_mixture(name: str) -> None:
    mix = data.ToyMixture(name)
    grid = torch.linspace(-3, 3, 1201, dtype=torch.float64)
    xy = torch.cartesian_prod(grid, grid)
    cell = float(grid[1] - grid[0]) ** 2
    assert math.isclose(float(mix.log_density(xy).exp().sum()) * cell, 1.0, abs_tol=2e-3)
    # The components barely overlap, so H ~ log K + entropy of one 2-D Gaussian.
    expected = math.log(len(mix.centers)) + math.log(2 * math.pi * math.e * mix.sigma**2)
    entropy, stderr = mix.entropy(n=50_000)
    assert abs(entropy - expected) < 5 * stderr + 1e-3


def test_dequantize_stays_in_its_bin() -> None:
    x = torch.arange(17.0) / 16
    y = data.dequantize(x.repeat(100), 17, torch.Generator().manual_seed(0))
    k = torch.arange(17.0).repeat(100)
    assert torch.all(y >= k / 17) and torch.all(y < (k + 1) / 17)
    assert torch.equal(data.to_levels(x, 17), torch.arange(17))


def test_npz_validation(tmp_path: Path) -> None:
    good = tmp_path / "good.npz"
    np.savez(good, images=np.random.default_rng(0).integers(0, 256, (20, 6, 6, 3), dtype=np.uint8))
    ds = data.load_npz(str(good))
    assert ds.spec.shape == (3, 6, 6) and ds.spec.n_train + ds.spec.n_test == 20
    floats = tmp_path / "floats.npz"
    np.savez(floats, x=np.zeros((4, 5, 5), dtype=np.float32))
    with pytest.raises(GenbenchError, match="dtype float32; expected uint8"):
        data.load_npz(str(floats))
    bad_shape = tmp_path / "shape.npz"
    np.savez(bad_shape, x=np.zeros((4, 5, 5, 2), dtype=np.uint8))
    with pytest.raises(GenbenchError, match=r"shape \(4, 5, 5, 2\)"):
        data.load_npz(str(bad_shape))
    with pytest.raises(GenbenchError, match="does not exist"):
        data.load_npz(str(tmp_path / "missing.npz"))


def bad_npz_files(folder: Path) -> dict[str, Path]:
    """Files given as dataset.path that are no usable .npz archive, and the reason each gives."""
    files = {"text": folder / "text.npz", "npy": folder / "one.npy", "empty": folder / "empty.npz"}
    files["text"].write_text("not an archive\n")
    np.save(files["npy"], np.zeros((4, 5, 5), dtype=np.uint8))
    np.savez(files["empty"])
    files["object"] = folder / "object.npz"
    np.savez(files["object"], x=np.array([{"code": "never run"}, None], dtype=object))
    files["truncated"] = folder / "truncated.npz"
    files["truncated"].write_bytes(files["object"].read_bytes()[:40])
    return files


NPZ_REASONS = {
    "text": "not a readable .npz archive",
    "npy": "holds a single .npy array",
    "empty": "holds no arrays",
    "object": "cannot be read as images",
    "truncated": "not a readable .npz archive",
}


@pytest.mark.parametrize("kind", NPZ_REASONS)
def test_npz_that_is_no_image_archive_gets_one_line(kind: str, tmp_path: Path) -> None:
    path = bad_npz_files(tmp_path)[kind]
    with pytest.raises(GenbenchError) as caught:
        data.load_npz(str(path))
    message = str(caught.value)
    assert NPZ_REASONS[kind] in message and str(path) in message and "\n" not in message
    assert "np.savez" in message or kind == "truncated"  # says what is expected instead


# ----------------------------------------------------------------------------- CIFAR-10 batches


def extracted_cifar(root: Path, batches: dict[str, bytes]) -> Path:
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name, blob in batches.items():
        (folder / name).write_bytes(blob)
    return folder


class Payload:
    """A pickle that creates a file when loaded: what a planted batch file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.mkdir, (str(self.marker),))


def test_extracted_cifar_batches_are_verified_before_unpickling(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path / "data"))
    batches = fake_cifar(monkeypatch)
    folder = extracted_cifar(tmp_path / "data", batches)
    ds = data.load_cifar10([], download_ok=False)
    assert ds.train.shape == (20, 3, 32, 32) and ds.test.shape == (3, 3, 32, 32)
    marker = tmp_path / "payload-ran"
    (folder / "data_batch_3").write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ChecksumError, match=r"checksum mismatch for .*data_batch_3"):
        data.load_cifar10([], download_ok=False)
    assert not marker.exists()  # refused before pickle ever saw it
    (folder / "data_batch_3").unlink()
    with pytest.raises(GenbenchError, match="lacks data_batch_3; delete that folder"):
        data.load_cifar10([], download_ok=False)


def test_the_official_cifar_batch_sums_are_torchvisions() -> None:
    from torchvision.datasets import CIFAR10

    official = dict(CIFAR10.train_list + CIFAR10.test_list)
    assert {f.name: f.md5 for f in data.CIFAR10_BATCHES} == official
    assert data.CIFAR10_FILES[0].md5 == CIFAR10.tgz_md5


def test_unknown_dataset_names_the_accepted_ones() -> None:
    with pytest.raises(GenbenchError, match="unknown dataset 'imagenet'; accepted: digits, toy2d"):
        datasets.load_dataset("imagenet")


@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="needs ../shared/data/mnist (the offline test split)")
def test_real_mnist_test_split_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENBENCH_DATA", str(SHARED_DATA))
    ds = datasets.load_dataset("mnist", download=False)
    # 8,000 / 2,000 of the t10k images, the last tenth of the 8,000 held out for validation
    assert ds.spec.n_train == 7200 and ds.spec.n_valid == 800 and ds.spec.n_test == 2000 and ds.spec.levels == 256
    assert "test split only" in ds.spec.source and "held out for validation" in ds.spec.source
    assert ds.train.shape == (7200, 1, 28, 28) and float(ds.train.min()) >= 0 and float(ds.train.max()) == 1.0
    assert ds.valid.shape == (800, 1, 28, 28) and ds.valid_labels.shape == (800,)


def test_validation_split_is_carved_from_training_rows_and_recorded() -> None:
    full = datasets.load_dataset("digits", valid_fraction=0.0)
    ds = datasets.load_dataset("digits")
    assert full.valid is None and full.spec.n_valid == 0 and full.spec.n_train == 1500
    assert (ds.spec.n_train, ds.spec.n_valid, ds.spec.n_test) == (1350, 150, 297)
    assert torch.equal(torch.cat([ds.train, ds.valid]), full.train)  # no row lost, none trained on twice
    assert torch.equal(ds.test, full.test)
    with pytest.raises(GenbenchError, match="valid_fraction"):
        datasets.load_dataset("digits", valid_fraction=1.0)


def test_a_spec_that_misstates_its_split_sizes_is_refused() -> None:
    ds = datasets.load_dataset("digits")
    wrong = data.Dataset(dataclasses.replace(ds.spec, n_valid=0), ds.train, ds.test, valid=ds.valid)
    with pytest.raises(RuntimeError, match="'n_valid': 0.*'n_valid': 150"):
        datasets.checked_sizes(wrong)
    assert datasets.checked_sizes(ds) is ds


def test_synthetic_images_have_the_asked_shape_and_levels() -> None:
    ds = datasets.load_dataset("synthetic", shape=[3, 16, 16], levels=5, n_train=50, n_test=10)
    assert ds.spec.shape == (3, 16, 16) and ds.spec.levels == 5 and ds.train.shape == (45, 3, 16, 16)
    k = ds.test * 4
    assert torch.equal(k, k.round()) and set(k.unique().tolist()) <= {0, 1, 2, 3, 4}  # on the 5-level grid
    with pytest.raises(GenbenchError, match="shape"):
        datasets.load_dataset("synthetic", shape=[16, 16])
