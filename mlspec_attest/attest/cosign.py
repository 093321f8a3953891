"""Adding a signature to an attestation that is already in a bundle."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mlspec_attest._internal import files as safe
from mlspec_attest.bundle import ATTESTATIONS, Bundle
from mlspec_attest.errors import AppendRefused, InputError
from mlspec_attest.keys import Signer
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.envelope import Envelope
from mlspec_attest.model.report import Finding

if TYPE_CHECKING:
    from mlspec_attest.attest.attestor import AppendPolicy


def cosign(path: Path, signer: Signer, *, policy: AppendPolicy | None = None, force: bool = False,
           overridden: list[Finding] | None = None) -> str:
    """Append ``signer``'s signature to the envelope at ``path`` (atomically, under the bundle lock).

    With ``policy`` (verify/preflight.py ``AppendGate``), a signature the gate would object to
    (a revoked key) is refused with AppendRefused and nothing written, unless ``force``;
    the overridden findings then go to ``overridden``.
    """
    if path.parent.name != ATTESTATIONS:
        raise InputError(f"{path}: not inside a bundle's {ATTESTATIONS}/ folder; cosign changes an envelope in "
                         "place, in its bundle (copy a loose envelope into one, or name the file there)")
    bundle = Bundle(path.parent.parent)
    with bundle.locked(create=False):  # never creates attestations/ or a lock next to a stray file
        rel = f"{ATTESTATIONS}/{path.name}"  # no-follow below the bundle root
        data = safe.read_file(rel, root=bundle.root, what="attestation")
        try:
            envelope = Envelope.from_dict(parse_json(data, source=str(path)))
        except ValueError as exc:
            raise InputError(f"{path}: not a DSSE envelope: {exc}") from None
        if envelope.verified_keyids([signer.public]):
            raise InputError(f"{path}: already signed by this key ({signer.keyid[:16]}…); "
                             "a second signature by the same key would not count toward a threshold")
        envelope.sign(signer)
        if policy is not None:
            _judge(policy, bundle, path, data, envelope, force, overridden)
        safe.write_file(bundle.root, rel, envelope.to_json(), replace=True, what="attestation")
    return signer.keyid


def _judge(policy: AppendPolicy, bundle: Bundle, path: Path, before: bytes, envelope: Envelope, force: bool,
           overridden: list[Finding] | None) -> None:
    """Refuse what this signature adds to the gate's objections (not what the attestation already had)."""
    had = {(f.code, f.message) for f in policy.check_signatures(bundle, envelope.payload, before, "dsse")}
    new = [f for f in policy.check_signatures(bundle, envelope.payload, envelope.to_json(), "dsse")
           if (f.code, f.message) not in had]
    if not new:
        return
    if force:
        if overridden is not None:
            overridden.extend(new)
        return
    raise AppendRefused(f"{path}: refused to add this signature: the gate's policy {policy.source} would refuse it: "
                        f"[{new[0].code}] {new[0].message}. Nothing was written. Sign with another key, or pass "
                        "--force to add it anyway (the gate will still refuse it)", tuple(new))
