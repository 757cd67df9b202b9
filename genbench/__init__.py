"""genbench: train deep generative models and compare them on one data and evaluation pipeline."""

__version__ = "0.1.0"
