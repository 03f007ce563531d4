"""Project error hierarchy.

Library code raises these; the CLI turns any of them into one line on stderr and exit code 2.
Messages name the file, line or key at fault so that the line alone is actionable.
"""

from __future__ import annotations


class SaliencyDistillError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(SaliencyDistillError):
    """A configuration key, value or type is wrong."""


class DataError(SaliencyDistillError):
    """A data file is missing or malformed, or an example is unusable."""


class ModelError(SaliencyDistillError):
    """A model cannot be resolved, verified or loaded."""
