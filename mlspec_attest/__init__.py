"""mlspec-attest: provable ML pipeline history.

Every lifecycle stage emits a canonicalised, hash-chained, DSSE-signed in-toto
Statement; a verifier checks the whole chain against a trust policy and the
objectives codified before training.
"""

__version__ = "0.1.0"
TOOL_NAME = "mlspec-attest"
