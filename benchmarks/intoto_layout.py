"""Build a signed 10-step in-toto layout with its links: the peer for ``mlspec verify``.

Runs inside benchmarks/.venv-peers (in-toto 3.x); benchmarks/run.py calls it as

    .venv-peers/bin/python benchmarks/intoto_layout.py OUT [STEPS]

and then times ``in-toto-verify --layout OUT/root.layout --verification-keys
OUT/owner.pub --link-dir OUT/links``. Each step consumes the previous step's product
and produces a small file (match rules chain them), as an ML pipeline would.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from in_toto.models.layout import Layout, Step
from in_toto.models.metadata import Metablock
from in_toto.runlib import in_toto_run
from securesystemslib.signer import CryptoSigner


def _key(out: Path, name: str) -> CryptoSigner:
    private = ed25519.Ed25519PrivateKey.generate()
    (out / f"{name}.pem").write_bytes(private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (out / f"{name}.pub").write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return CryptoSigner(private)


def main() -> int:
    out = Path(sys.argv[1]).resolve()
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    (out / "work").mkdir(parents=True, exist_ok=False)
    (out / "links").mkdir()
    owner, functionary = _key(out, "owner"), _key(out, "functionary")
    fkey = functionary.public_key.to_dict()
    fkey["keyid"] = functionary.public_key.keyid

    layout = Layout()
    layout.set_relative_expiration(years=1)
    layout.add_functionary_key(fkey)
    names = [f"step{i:02d}" for i in range(steps)]
    for i, name in enumerate(names):
        step = Step(name=name)
        step.pubkeys = [fkey["keyid"]]
        if i:
            step.expected_materials = [["MATCH", f"{names[i - 1]}.out", "WITH", "PRODUCTS", "FROM", names[i - 1]],
                                       ["DISALLOW", "*"]]
        step.expected_products = [["CREATE", f"{name}.out"], ["DISALLOW", "*"]]
        layout.steps.append(step)

    cwd = os.getcwd()
    os.chdir(out / "work")
    try:
        for i, name in enumerate(names):
            Path(f"{name}.out").write_text(f"{name} output\n")
            materials = [f"{names[i - 1]}.out"] if i else []
            link = in_toto_run(name, materials, [f"{name}.out"], [], signer=functionary, compact_json=False)
            link.dump(str(out / "links" / f"{name}.{fkey['keyid'][:8]}.link"))
    finally:
        os.chdir(cwd)
    metablock = Metablock(signed=layout)
    metablock.create_signature(owner)
    metablock.dump(str(out / "root.layout"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
