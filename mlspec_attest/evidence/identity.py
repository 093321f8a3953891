"""Sigstore identity rules: who may have signed keylessly (policy data, no Sigstore import).

Kept apart from ``sigstore.py`` so that the trust policy can be parsed, and its
identity rules validated, at load time without importing sigstore-python.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mlspec_attest.errors import InputError

# IdentityRule claim field -> (sigstore.verify.policy class name, OID, DER-encoded value?)
IDENTITY_CLAIMS: dict[str, tuple[str, str, bool]] = {
    "workflow_repository": ("GitHubWorkflowRepository", "1.3.6.1.4.1.57264.1.5", False),
    "workflow_ref": ("GitHubWorkflowRef", "1.3.6.1.4.1.57264.1.6", False),
    "workflow_sha": ("GitHubWorkflowSHA", "1.3.6.1.4.1.57264.1.3", False),
    "workflow_trigger": ("GitHubWorkflowTrigger", "1.3.6.1.4.1.57264.1.2", False),
    "workflow_name": ("GitHubWorkflowName", "1.3.6.1.4.1.57264.1.4", False),
    "build_signer_uri": ("OIDCBuildSignerURI", "1.3.6.1.4.1.57264.1.9", True),
    "runner_environment": ("OIDCRunnerEnvironment", "1.3.6.1.4.1.57264.1.11", True),
    "source_repository_uri": ("OIDCSourceRepositoryURI", "1.3.6.1.4.1.57264.1.12", True),
    "source_repository_digest": ("OIDCSourceRepositoryDigest", "1.3.6.1.4.1.57264.1.13", True),
    "source_repository_ref": ("OIDCSourceRepositoryRef", "1.3.6.1.4.1.57264.1.14", True),
}


@dataclass(frozen=True)
class IdentityRule:
    """Who may have signed: certificate SAN (exact or regex) + OIDC issuer + optional claims.

    The issuer is mandatory: a SAN without its issuer can be minted by any
    identity provider Fulcio trusts.
    """

    issuer: str
    san: str | None = None
    san_pattern: str | None = None
    workflow_repository: str | None = None
    workflow_ref: str | None = None
    workflow_sha: str | None = None
    workflow_trigger: str | None = None
    workflow_name: str | None = None
    build_signer_uri: str | None = None
    runner_environment: str | None = None
    source_repository_uri: str | None = None
    source_repository_digest: str | None = None
    source_repository_ref: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.issuer, str) or not self.issuer:
            raise InputError("identity rule: 'issuer' is required (the OIDC issuer URL)")
        if (self.san is None) == (self.san_pattern is None):
            raise InputError("identity rule: give exactly one of 'san' or 'san_pattern'")
        if self.san is not None and (not isinstance(self.san, str) or not self.san):
            raise InputError("identity rule: 'san' must be a non-empty string")
        if self.san_pattern is not None:
            if not isinstance(self.san_pattern, str) or not self.san_pattern:
                raise InputError("identity rule: 'san_pattern' must be a non-empty string")
            try:
                re.compile(self.san_pattern)
            except re.error as exc:
                raise InputError(f"identity rule: invalid san_pattern {self.san_pattern!r}: {exc}") from None
        for name in IDENTITY_CLAIMS:
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise InputError(f"identity rule: {name!r} must be a non-empty string")

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "identity rule") -> IdentityRule:
        """Build from a policy mapping; unknown keys are refused so typos never weaken a pin."""
        if not isinstance(data, dict):
            raise InputError(f"{where}: expected a mapping, found {type(data).__name__}")
        allowed = {"san", "san_pattern", "issuer", *IDENTITY_CLAIMS}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise InputError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
        for key, value in data.items():
            if not isinstance(value, str):
                raise InputError(f"{where}: {key!r} must be a string, found {type(value).__name__}")
        if "issuer" not in data:
            raise InputError(f"{where}: 'issuer' is required (the OIDC issuer URL)")
        try:
            return cls(**data)
        except InputError as exc:
            raise InputError(f"{where}: {str(exc).removeprefix('identity rule: ')}") from None

    def to_dict(self) -> dict[str, str]:
        """Plain mapping with only the fields that are set (round-trips through from_dict)."""
        out: dict[str, str] = {}
        for name in ("san", "san_pattern", "issuer", *IDENTITY_CLAIMS):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def describe(self) -> str:
        """Short human form for messages."""
        who = self.san if self.san is not None else f"/{self.san_pattern}/"
        extra = "".join(f", {k}={getattr(self, k)}" for k in IDENTITY_CLAIMS if getattr(self, k) is not None)
        return f"{who} (issuer {self.issuer}{extra})"
