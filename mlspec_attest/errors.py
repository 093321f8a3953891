"""One error tree; every error carries the exit status the CLI gives it.

The CLI catches ``MlspecError`` in one place and prints its message on one line:
``InputError`` (and everything under it) is unusable input or usage, exit 2;
``VerificationError`` means verification ran and refused, exit 1. A hostile
bundle is never an exception inside the gate: it is a finding in the report.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2


class MlspecError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = EXIT_INPUT


class InputError(MlspecError):
    """Unusable input (missing file, malformed YAML, wrong passphrase...): exit 2."""

    exit_code = EXIT_INPUT


class ExpressionError(InputError):
    """A CEL expression that cannot be compiled; ``line``/``column`` are 1-based."""

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        self.column = column

    def position(self) -> str:
        """``column 18`` for one-line expressions, ``line 2 column 5`` otherwise."""
        if self.column is None:
            return "position unknown"
        if self.line is not None and self.line > 1:
            return f"line {self.line} column {self.column}"
        return f"column {self.column}"


class VerificationError(MlspecError):
    """Verification ran and what was checked did not hold up: exit 1."""

    exit_code = EXIT_FAILED


class EvidenceVerificationError(VerificationError):
    """External evidence (a Sigstore bundle) did not verify."""


class ProofError(VerificationError, ValueError):
    """A Merkle proof was asked for, or claims, sizes or indexes that do not exist."""


class AppendRefused(VerificationError):
    """``mlspec attest`` refused an append the gate would refuse (``findings``); nothing was written: exit 1."""

    def __init__(self, message: str, findings: tuple[object, ...] = ()) -> None:
        super().__init__(message)
        self.findings = findings
