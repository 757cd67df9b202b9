"""Errors that the command line reports as one clear line and a non-zero exit code."""


class GenbenchError(Exception):
    """A user-facing error: the message names the bad value and what is accepted instead."""


class ChecksumError(GenbenchError):
    """A downloaded or found file does not match its published checksum."""


class DataMissingError(GenbenchError):
    """A dataset's files are not in the data root and could not be downloaded."""


class NonFiniteLossError(GenbenchError):
    """Training produced NaN or Inf; the last good checkpoint is kept."""
