"""Error types that decide the exit status.

``InputError`` is bad input or usage: the CLI prints its message on one line and
exits 2. Verification failures are never exceptions; they are findings.
"""

from __future__ import annotations


class MlspecError(Exception):
    """Base of every error this package raises on purpose."""


class InputError(MlspecError):
    """Unusable input (missing file, malformed YAML, wrong passphrase...): exit 2."""


class KeyError_(InputError):
    """A key could not be loaded or used."""
