"""Datasets: specs and splits, toy densities, download + checksum + safe extraction against a local server."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import math
import pickle
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA

from genbench import data
from genbench.errors import ChecksumError, DataMissingError, GenbenchError

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


def test_unknown_dataset_names_the_accepted_ones() -> None:
    with pytest.raises(GenbenchError, match="unknown dataset 'imagenet'; accepted: digits, toy2d"):
        data.load_dataset("imagenet")


@pytest.mark.skipif(not (SHARED_DATA / "mnist").exists(), reason="needs ../shared/data/mnist (the offline test split)")
def test_real_mnist_test_split_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENBENCH_DATA", str(SHARED_DATA))
    ds = data.load_dataset("mnist", download=False)
    # 8,000 / 2,000 of the t10k images, the last tenth of the 8,000 held out for validation
    assert ds.spec.n_train == 7200 and ds.spec.n_valid == 800 and ds.spec.n_test == 2000 and ds.spec.levels == 256
    assert "test split only" in ds.spec.source and "held out for validation" in ds.spec.source
    assert ds.train.shape == (7200, 1, 28, 28) and float(ds.train.min()) >= 0 and float(ds.train.max()) == 1.0
    assert ds.valid.shape == (800, 1, 28, 28) and ds.valid_labels.shape == (800,)


def test_validation_split_is_carved_from_training_rows_and_recorded() -> None:
    full = data.load_dataset("digits", valid_fraction=0.0)
    ds = data.load_dataset("digits")
    assert full.valid is None and full.spec.n_valid == 0 and full.spec.n_train == 1500
    assert (ds.spec.n_train, ds.spec.n_valid, ds.spec.n_test) == (1350, 150, 297)
    assert torch.equal(torch.cat([ds.train, ds.valid]), full.train)  # no row lost, none trained on twice
    assert torch.equal(ds.test, full.test)
    with pytest.raises(GenbenchError, match="valid_fraction"):
        data.load_dataset("digits", valid_fraction=1.0)


# ----------------------------------------------------------------------------- a local mirror


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An http.server on 127.0.0.1 serving a folder; yields (base URL, folder)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", folder
    server.shutdown()
    server.server_close()


def write_mnist_like(folder: Path, n: int = 10) -> list[data.RemoteFile]:
    rng = np.random.default_rng(0)
    files = []
    for name, array in [
        ("t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28))),
        ("t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,))),
    ]:
        blob = idx_bytes(array)
        (folder / name).write_bytes(blob)
        files.append(data.RemoteFile(name, hashlib.md5(blob).hexdigest()))
    return files


def test_download_verifies_and_parses(mirror: tuple[str, Path], isolated_data_root: Path) -> None:
    url, folder = mirror
    test_files = write_mnist_like(folder)
    files = (
        data.RemoteFile("train-images-idx3-ubyte.gz", "0" * 32),
        data.RemoteFile("train-labels-idx1-ubyte.gz", "0" * 32),
        *test_files,
    )
    ds = data.load_mnist_like("mnist_local", files, [url])
    assert ds.spec.n_train == 8 and ds.spec.n_test == 2  # only the test split exists: 80 / 20
    assert (isolated_data_root / "mnist_local" / "t10k-images-idx3-ubyte.gz").exists()


def test_checksum_mismatch_is_refused_and_nothing_is_kept(mirror: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = mirror
    (folder / "file.bin").write_bytes(b"tampered")
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(ChecksumError, match="expected 0{32}"):
        data.download(url + "file.bin", dest, "0" * 32)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_missing_offline_names_files_and_folder(isolated_data_root: Path) -> None:
    with pytest.raises(DataMissingError, match=r"put train-images-idx3-ubyte.gz.*into .*fashion_mnist"):
        data.load_dataset("fashion_mnist", download=False)
    # An unreachable mirror counts as offline, with the same message.
    with pytest.raises(DataMissingError, match="not found offline"):
        data.load_dataset("mnist", mirrors=["http://127.0.0.1:9/"])


def cifar_tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return buf.getvalue()


def cifar_batch(n: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return pickle.dumps(
        {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
    )


def test_cifar_download_extract_and_tar_safety(
    mirror: tuple[str, Path], isolated_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = mirror
    evil = cifar_tar({"cifar-10-batches-py/data_batch_1": b"x", "../escaped.txt": b"owned"})
    (folder / "cifar-10-python.tar.gz").write_bytes(evil)
    monkeypatch.setattr(
        data, "CIFAR10_FILES", (data.RemoteFile("cifar-10-python.tar.gz", hashlib.md5(evil).hexdigest()),)
    )
    with pytest.raises(GenbenchError, match=r"unsafe member '../escaped.txt'"):
        data.load_cifar10([url])
    assert not (isolated_data_root / "escaped.txt").exists()
    assert not (isolated_data_root / "cifar10" / "cifar-10-batches-py").exists()

    (isolated_data_root / "cifar10" / "cifar-10-python.tar.gz").unlink()
    members = {f"cifar-10-batches-py/data_batch_{i}": cifar_batch(4, i) for i in range(1, 6)}
    good = cifar_tar({**members, "cifar-10-batches-py/test_batch": cifar_batch(3, 9)})
    (folder / "cifar-10-python.tar.gz").write_bytes(good)
    monkeypatch.setattr(
        data, "CIFAR10_FILES", (data.RemoteFile("cifar-10-python.tar.gz", hashlib.md5(good).hexdigest()),)
    )
    ds = data.load_cifar10([url])
    assert ds.train.shape == (20, 3, 32, 32) and ds.test.shape == (3, 3, 32, 32)
    assert ds.spec.levels == 256 and float(ds.train.max()) <= 1.0
