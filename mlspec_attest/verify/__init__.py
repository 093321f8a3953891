"""The deploy gate: ``verify_bundle(bundle, policy)`` returns a Report; its checks are small modules here."""

from mlspec_attest.verify.verifier import CHECKS, Verifier, verify_bundle

__all__ = ["CHECKS", "Verifier", "verify_bundle"]
