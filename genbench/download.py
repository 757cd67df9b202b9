"""Downloads and checksums: mirrors tried in order with connect and read timeouts, md5 verification before
anything is kept, safe tar extraction, and temporaries that a killed process does not leave for good.

Used by genbench/data.py, which lists each dataset's official files and their md5 sums.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from genbench.errors import ChecksumError, DataMissingError, GenbenchError
from genbench.results import atomic_write, remove_stale_temps, temp_sibling

log = logging.getLogger(__name__)
# Seconds to wait for a mirror to accept the connection, then for each read of its answer; a mirror that
# misses either is skipped for the rest of the download.
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RemoteFile:
    name: str
    md5: str


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


class _ReadTimeout:
    """Connection mixin: connect within the request's timeout, then wait at most `read_timeout` s per read."""

    def __init__(self, *args: object, read_timeout: float, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.read_timeout)


class _HTTPConnection(_ReadTimeout, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_ReadTimeout, http.client.HTTPSConnection):
    pass


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self.read_timeout = read_timeout

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_HTTPConnection, read_timeout=self.read_timeout), req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float) -> None:
        super().__init__()
        self.read_timeout = read_timeout

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_HTTPSConnection, read_timeout=self.read_timeout)
        return self.do_open(connection, req, context=self._context)


def download(
    url: str, dest: Path, md5: str, connect_timeout: float | None = None, read_timeout: float | None = None
) -> Path:
    """Download `url` to `dest` through a temporary file, with a progress bar; verify the md5 before the rename.

    urllib's proxies and redirects apply; the timeouts (default `CONNECT_TIMEOUT_S`, `READ_TIMEOUT_S`) bound
    the wait for the connection and for each read. A mismatching download is deleted and raises
    `ChecksumError`, so nothing unverified is left behind (nor is a killed download's temporary, for long).
    """
    connect_timeout = CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout
    read_timeout = READ_TIMEOUT_S if read_timeout is None else read_timeout
    opener = urllib.request.build_opener(_HTTPHandler(read_timeout), _HTTPSHandler(read_timeout))

    def fetch_and_verify(tmp: Path) -> None:
        with open(tmp, "wb") as out, opener.open(url, timeout=connect_timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}", leave=False) as bar:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    bar.update(len(chunk))
        got = md5sum(tmp)
        if got != md5:
            raise ChecksumError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; the file was not kept")

    atomic_write(dest, fetch_and_verify)
    return dest


def _mirror_failure(err: Exception) -> tuple[str, bool]:
    """Why a mirror failed, in words, and whether it is unreachable (so the other files skip it too)."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}", False
    if isinstance(err, urllib.error.URLError):
        if isinstance(err.reason, TimeoutError):
            return f"no connection within {CONNECT_TIMEOUT_S:g} s", True
        return f"unreachable: {err.reason}", True
    if isinstance(err, TimeoutError):
        return f"timed out: no answer within {READ_TIMEOUT_S:g} s", True
    if isinstance(err, ChecksumError):
        return "served a file with the wrong md5", False
    return f"{type(err).__name__}: {err}", True


def _download_from_mirrors(file: RemoteFile, path: Path, mirrors: Sequence[str], unreachable: set[str]) -> list[str]:
    """Try each mirror in order until one serves `file` with the right md5; returns what went wrong where."""
    failures = []
    candidates = [m for m in mirrors if m not in unreachable]
    for i, mirror in enumerate(candidates):
        url = mirror.rstrip("/") + "/" + file.name
        try:
            download(url, path, file.md5)
            return failures
        except (OSError, http.client.HTTPException, ValueError, ChecksumError) as err:
            why, down = _mirror_failure(err)
            if down:
                unreachable.add(mirror)
                why += " (not asked for further files)"
            failures.append(f"{url}: {why}")
            log.warning("download %s: %s%s", url, why, "; trying the next mirror" if i + 1 < len(candidates) else "")
    return failures


def fetch_files(
    folder: Path,
    files: Sequence[RemoteFile],
    mirrors: Sequence[str],
    allow_download: bool,
    required: Sequence[str] = (),
) -> dict[str, Path]:
    """Find each file in `folder` (verified) or download it from the first mirror, in order, that serves it.

    Returns the paths of the files that are present. Files that are missing after trying every mirror are
    left out of the result, unless they are `required`: then `DataMissingError` names them, the folder, and
    what each mirror answered. A mirror that times out or cannot be reached is not asked for further files.
    """
    present: dict[str, Path] = {}
    failures: list[str] = []
    unreachable: set[str] = set()
    for f in files:
        path = folder / f.name
        if not path.exists() and allow_download:
            failures += _download_from_mirrors(f, path, mirrors, unreachable)
        if path.exists():
            verify(path, f.md5)
            present[f.name] = path
    if any(name not in present for name in required):
        raise DataMissingError(missing_message(folder.name, folder, [f.name for f in files], failures))
    return present


def missing_message(name: str, folder: Path, files: Sequence[str], failures: Sequence[str] = ()) -> str:
    tried = f"; tried {'; '.join(failures)}" if failures else ""
    return (
        f"dataset {name!r} not found offline: put {', '.join(files)} into {folder} "
        f"(or set GENBENCH_DATA to the folder that holds '{folder.name}/'){tried}"
    )


def extract_into(archive: Path, member: str, dest: Path) -> None:
    """Extract the folder `member` of a tar archive to `dest`, through a temporary folder beside it.

    A kill during the extraction leaves only the temporary folder, which the next extraction removes.
    """
    remove_stale_temps(dest)
    tmp = temp_sibling(dest)
    try:
        tmp.mkdir()
        safe_extract(archive, tmp)
        os.replace(tmp / member, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def safe_extract(archive: Path, target: Path) -> None:
    """Extract a tar archive, refusing any member that would land outside `target`."""
    target = target.resolve()
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            dest = (target / member.name).resolve()
            if not dest.is_relative_to(target) or member.issym() or member.islnk():
                raise GenbenchError(f"refusing unsafe member {member.name!r} in {archive}")
        tar.extractall(target, filter="data")
