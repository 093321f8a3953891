"""The version every signed statement records as ``run.tool``; kept apart so any module may import it."""

__version__ = "0.1.0"
TOOL_NAME = "mlspec-attest"
