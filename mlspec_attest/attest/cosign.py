"""Adding a signature to an attestation that is already in a bundle."""

from __future__ import annotations

from pathlib import Path

from mlspec_attest._internal import files as safe
from mlspec_attest.bundle import ATTESTATIONS, Bundle
from mlspec_attest.errors import InputError
from mlspec_attest.keys import Signer
from mlspec_attest.model.canonical import parse_json
from mlspec_attest.model.envelope import Envelope


def cosign(path: Path, signer: Signer) -> str:
    """Append ``signer``'s signature to the envelope at ``path`` (atomically, under the bundle lock)."""
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
        safe.write_file(bundle.root, rel, envelope.to_json(), replace=True, what="attestation")
    return signer.keyid
