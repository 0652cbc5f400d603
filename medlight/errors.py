"""Errors that medlight reports to the user as a message, not as a traceback."""

from __future__ import annotations


class MedlightError(Exception):
    """Base class: the CLI prints the message and exits non-zero without a traceback."""

    exit_code = 2


class DatasetError(MedlightError):
    """The dataset cannot be described or read (layout, dataset.json, split file)."""


class DataIntegrityError(MedlightError):
    """One or more cases failed the integrity checks; the message lists every problem."""


class ConfigError(MedlightError):
    """The configuration is inconsistent (e.g. network channels do not match the data)."""


class NonFiniteError(MedlightError):
    """A loss or the weights became NaN/Inf."""
