"""Downloads against local servers on 127.0.0.1 (never the internet): checksums, mirrors in order, timeouts,
safe tar extraction, and the temporaries a killed download leaves."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from genbench import data, datasets, download
from genbench.errors import ChecksumError, DataMissingError, GenbenchError

REPO = Path(__file__).resolve().parents[1]
SHORT_TIMEOUT_S = 0.3  # the tests' servers answer at once or never


class Server:
    """A threaded HTTP server on 127.0.0.1 serving a folder; `hang_after_headers` sends headers, half the body,
    then nothing (a transfer that stalls)."""

    def __init__(self, folder: Path, hang_after_headers: bool = False) -> None:
        self.release = threading.Event()
        release = self.release

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if not hang_after_headers:
                    return super().do_GET()
                blob = (folder / self.path.lstrip("/")).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(blob)))
                self.end_headers()
                self.wfile.write(blob[: len(blob) // 2])
                self.wfile.flush()
                release.wait(30)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=folder))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class SilentServer:
    """Accepts connections and never answers (a mirror that hangs); counts the connections it accepted."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        for conn in self.accepted:
            conn.close()
        self.sock.close()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A good mirror: (base URL, the folder it serves)."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    server = Server(folder)
    yield server.url, folder
    server.close()


@pytest.fixture
def silent() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


@pytest.fixture
def short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download, "CONNECT_TIMEOUT_S", SHORT_TIMEOUT_S)
    monkeypatch.setattr(download, "READ_TIMEOUT_S", SHORT_TIMEOUT_S)


def idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def write_mnist_like(folder: Path, n: int = 10) -> list[download.RemoteFile]:
    rng = np.random.default_rng(0)
    files = []
    for name, array in [
        ("t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28))),
        ("t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, (n,))),
    ]:
        blob = idx_bytes(array)
        (folder / name).write_bytes(blob)
        files.append(download.RemoteFile(name, hashlib.md5(blob).hexdigest()))
    return files


def within(seconds: float, fn: functools.partial) -> object:
    """Run `fn` in a thread; fail (instead of hanging the suite) if it does not return in `seconds`."""
    out: dict[str, object] = {}

    def target() -> None:
        try:
            out["value"] = fn()
        except BaseException as err:  # handed to the test thread
            out["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: a timeout is not applied"
    if "error" in out:
        raise out["error"]  # type: ignore[misc]
    return out.get("value")


# ----------------------------------------------------------------------------- checksums


def test_download_verifies_and_parses(mirror: tuple[str, Path], isolated_data_root: Path) -> None:
    url, folder = mirror
    test_files = write_mnist_like(folder)
    files = (
        download.RemoteFile("train-images-idx3-ubyte.gz", "0" * 32),
        download.RemoteFile("train-labels-idx1-ubyte.gz", "0" * 32),
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
        download.download(url + "file.bin", dest, "0" * 32)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_missing_offline_names_files_and_folder(isolated_data_root: Path) -> None:
    with pytest.raises(DataMissingError, match=r"put train-images-idx3-ubyte.gz.*into .*fashion_mnist"):
        datasets.load_dataset("fashion_mnist", download=False)
    # A refused connection counts as offline, with the same message, and says what each mirror answered.
    with pytest.raises(
        DataMissingError, match=r"not found offline.*tried http://127.0.0.1:9/train-images.*unreachable"
    ):
        datasets.load_dataset("mnist", mirrors=["http://127.0.0.1:9/"])


# ----------------------------------------------------------------------------- mirrors and timeouts


def test_a_bad_first_mirror_does_not_stop_the_search(tmp_path: Path, mirror: tuple[str, Path]) -> None:
    url, folder = mirror
    (test_files := write_mnist_like(folder))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / test_files[0].name).write_bytes(b"corrupt")  # wrong md5 for the first file, 404 for the second
    server = Server(bad)
    try:
        present = download.fetch_files(tmp_path / "dest", test_files, [server.url, url], allow_download=True)
    finally:
        server.close()
    assert sorted(present) == sorted(f.name for f in test_files)
    for f in test_files:
        download.verify(present[f.name], f.md5)


def test_a_mirror_that_never_answers_times_out_and_the_next_one_serves(
    silent: SilentServer,
    mirror: tuple[str, Path],
    tmp_path: Path,
    short_timeouts: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, folder = mirror
    files = write_mnist_like(folder)
    fetch = functools.partial(download.fetch_files, tmp_path / "dest", files, [silent.url, url], True)
    present = within(30, fetch)
    assert sorted(present) == sorted(f.name for f in files)  # type: ignore[arg-type]
    assert len(silent.accepted) == 1  # the hanging mirror was asked once, not once per file
    assert (
        f"timed out: no answer within {SHORT_TIMEOUT_S:g} s (not asked for further files); trying the next"
        in caplog.text
    )


def test_every_mirror_hanging_gives_a_clear_message(
    silent: SilentServer, tmp_path: Path, short_timeouts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENBENCH_DATA", str(tmp_path))
    load = functools.partial(datasets.load_dataset, "mnist", mirrors=[silent.url])
    with pytest.raises(DataMissingError, match=rf"{silent.url}train-images-idx3-ubyte.gz: timed out: no answer within"):
        within(30, load)


def test_a_transfer_that_stalls_midway_times_out(tmp_path: Path, short_timeouts: None) -> None:
    folder = tmp_path / "srv"
    folder.mkdir()
    (folder / "f.bin").write_bytes(os.urandom(1 << 16))
    server = Server(folder, hang_after_headers=True)
    try:
        with pytest.raises(TimeoutError):
            within(30, functools.partial(download.download, server.url + "f.bin", tmp_path / "f.bin", "0" * 32))
    finally:
        server.close()
    assert list(tmp_path.glob(".f.bin.*")) == []  # the half-written temporary went with the error


def test_a_killed_download_leaves_its_temporary_only_until_the_next_run(tmp_path: Path) -> None:
    folder = tmp_path / "srv"
    folder.mkdir()
    blob = os.urandom(1 << 20)  # half of it is many reads: the child writes before the stall
    (folder / "f.bin").write_bytes(blob)
    dest = tmp_path / "cache" / "f.bin"
    stalling = Server(folder, hang_after_headers=True)
    call = f"download.download({stalling.url + 'f.bin'!r}, Path({str(dest)!r}), 'x')"
    script = f"from pathlib import Path; from genbench import download; {call}"
    child = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        for _ in range(600):  # the child has received half the file once its temporary holds data
            temps = list(dest.parent.glob(".f.bin.*")) if dest.parent.exists() else []
            if temps and temps[0].stat().st_size > 0:
                break
            time.sleep(0.05)
        assert temps, "the child never started writing"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        child.kill()
        stalling.close()
    assert [p.name for p in dest.parent.iterdir()] == [temps[0].name]  # kill -9: the temporary is debris
    good = Server(folder)
    try:
        download.download(good.url + "f.bin", dest, hashlib.md5(blob).hexdigest())
    finally:
        good.close()
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"] and dest.read_bytes() == blob


# ----------------------------------------------------------------------------- CIFAR-10 archive


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


def fake_cifar(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Small CIFAR-10 batches, with their md5 sums standing in for the official ones."""
    batches = {f"data_batch_{i}": cifar_batch(4, i) for i in range(1, 6)} | {"test_batch": cifar_batch(3, 9)}
    sums = tuple(download.RemoteFile(name, hashlib.md5(blob).hexdigest()) for name, blob in batches.items())
    monkeypatch.setattr(data, "CIFAR10_BATCHES", sums)
    return batches


def test_cifar_download_extract_and_tar_safety(
    mirror: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, folder = mirror
    isolated_data_root = tmp_path / "data"
    monkeypatch.setenv("GENBENCH_DATA", str(isolated_data_root))
    evil = cifar_tar({"cifar-10-batches-py/data_batch_1": b"x", "../escaped.txt": b"owned"})
    (folder / "cifar-10-python.tar.gz").write_bytes(evil)
    monkeypatch.setattr(
        data, "CIFAR10_FILES", (download.RemoteFile("cifar-10-python.tar.gz", hashlib.md5(evil).hexdigest()),)
    )
    with pytest.raises(GenbenchError, match=r"unsafe member '../escaped.txt'"):
        data.load_cifar10([url])
    assert not (isolated_data_root / "escaped.txt").exists()
    assert not (isolated_data_root / "cifar10" / "cifar-10-batches-py").exists()
    assert [p.name for p in (isolated_data_root / "cifar10").iterdir()] == ["cifar-10-python.tar.gz"]  # no debris

    (isolated_data_root / "cifar10" / "cifar-10-python.tar.gz").unlink()
    batches = fake_cifar(monkeypatch)
    good = cifar_tar({f"cifar-10-batches-py/{name}": blob for name, blob in batches.items()})
    (folder / "cifar-10-python.tar.gz").write_bytes(good)
    monkeypatch.setattr(
        data, "CIFAR10_FILES", (download.RemoteFile("cifar-10-python.tar.gz", hashlib.md5(good).hexdigest()),)
    )
    ds = data.load_cifar10([url])
    assert ds.train.shape == (20, 3, 32, 32) and ds.test.shape == (3, 3, 32, 32)
    assert ds.spec.levels == 256 and float(ds.train.max()) <= 1.0
