"""genbench: train deep generative models and compare them on one data and evaluation pipeline."""

__version__ = "0.1.0"

from pathlib import Path

# The Hydra config tree (conf/ beside the package): the CLI composes it, commands read model yamls from it.
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
