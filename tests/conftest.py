"""Shared fixtures: Hydra-composed configs with tiny overrides, and an isolated data root."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from omegaconf import DictConfig

from genbench.cli import CONF_DIR

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# The tests run tiny models, where intra-op threads cost more in synchronisation than they save; on a busy
# 2-core host two threads made the suite several times slower (measured: one likelihood gradient of a digits
# GAN took 0.024 s on one thread and 0.25 s on two while other jobs ran).
torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def isolated_data_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Tests never touch the user's cache: the data root is a fresh folder (caches built there stay per session)."""
    root = tmp_path_factory.mktemp("genbench_data")
    old = os.environ.get("GENBENCH_DATA")
    os.environ["GENBENCH_DATA"] = str(root)
    yield root
    if old is None:
        os.environ.pop("GENBENCH_DATA", None)
    else:
        os.environ["GENBENCH_DATA"] = old


@pytest.fixture
def compose(tmp_path: Path) -> Callable[..., DictConfig]:
    """`compose(["model=vae", "train.max_steps=3"])`: the real config, with out_dir in this test's tmp_path."""

    def _compose(overrides: Sequence[str] = (), out_dir: Path | None = None) -> DictConfig:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=[f"out_dir={out_dir or tmp_path / 'run'}", *overrides])

    return _compose
