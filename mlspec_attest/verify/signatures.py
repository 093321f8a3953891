"""Reading one attestation: strict DSSE, canonical form, in-toto statement, signatures the policy trusts.

Each file is judged alone here (no chain context), so this is the part the
verifier fans out over cores for long chains.
"""

from __future__ import annotations

from mlspec_attest.bundle import BundleFile, extract_payload
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import parse_json, sha256_hex
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.report import WARNING, Report
from mlspec_attest.model.statement import StageStatement
from mlspec_attest.policy import Policy
from mlspec_attest.verify.context import Entry, stage_from_file_name


class EntryReader:
    """Turns bundle files into entries under one policy; stateless apart from the policy.

    Without a policy (an auditor's replay before one is at hand) the same envelope and
    statement checks run, and no entry is authentic: signatures are not checked."""

    def __init__(self, policy: Policy | None) -> None:
        self.policy = policy

    def read(self, bf: BundleFile, report: Report) -> Entry | None:
        """Parse one bundle file and check its signatures; None (with findings) when it is unusable."""
        name = bf.path.name
        if bf.kind == "sigstore":
            return self._read_sigstore(bf, report) if self.policy is not None else self._read_unchecked(bf, report)
        # Fast path: the file is byte-for-byte the envelope mlspec writes (the strict path below
        # would accept it and find it byte-stable); anything else takes the strict path.
        envelope = Envelope.from_file_fast(bf.data)
        byte_stable = envelope is not None
        if envelope is None:
            try:
                doc = parse_json(bf.data, source=name)
                envelope = Envelope.from_dict(doc)
                if len(doc["signatures"]) != len(envelope.signatures):
                    # No DSSE tool writes one signature twice; accepting it would make "layout" more than layout.
                    raise ValueError("the same signature appears twice")
            except (InputError, ValueError) as exc:
                report.add("ENVELOPE_INVALID", f"{name}: not a valid DSSE envelope: {exc}", file=name,
                           sequence=bf.number, hint="the file was damaged or edited; restore it from the pipeline's output")
                return None
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            report.add("PAYLOAD_TYPE", f"{name}: payloadType {envelope.payload_type!r} is not {IN_TOTO_PAYLOAD_TYPE}",
                       file=name, sequence=bf.number)
            return None
        if not byte_stable and bf.data != envelope.to_json():
            # Another DSSE tool (securesystemslib, a co-signer, a pretty-printer) wrote the same envelope
            # in another layout. The signatures cover PAE(payloadType, payload), and the strict parse
            # above already refused what could make two readers disagree (duplicate keys, unknown
            # fields, a second payload, invalid UTF-8, lenient base64), so layout alone is a warning.
            report.add("ENVELOPE_NOT_CANONICAL", f"{name}: valid envelope in another layout than mlspec writes "
                       "(whitespace, key order, string escapes or base64 alphabet); its signed content is "
                       "what was checked", severity=WARNING, file=name, sequence=bf.number,
                       hint="harmless if another DSSE tool re-wrote the file; 'mlspec attest cosign' "
                            "rewrites it in mlspec's layout")
        try:
            statement = StageStatement.from_payload(envelope.payload)
        except (InputError, ValueError) as exc:
            report.add("STATEMENT_INVALID", f"{name}: {exc}", file=name, sequence=bf.number)
            return None
        entry = Entry(file=bf, payload=envelope.payload, payload_sha256=sha256_hex(envelope.payload),
                      statement=statement, signers=[])
        if self.policy is not None:
            self._check_signatures(entry, envelope, report)
        return entry

    def _read_unchecked(self, bf: BundleFile, report: Report) -> Entry | None:
        """A keyless bundle's statement without its Sigstore verification (no policy to verify it under)."""
        name = bf.path.name
        try:
            payload = extract_payload(bf.kind, bf.data)
            statement = StageStatement.from_payload(payload)
        except (InputError, ValueError) as exc:
            report.add("STATEMENT_INVALID", f"{name}: {exc}", file=name, sequence=bf.number)
            return None
        return Entry(file=bf, payload=payload, payload_sha256=sha256_hex(payload), statement=statement, signers=[])

    def _read_sigstore(self, bf: BundleFile, report: Report) -> Entry | None:
        name = bf.path.name
        assert self.policy is not None
        rule = self.policy.stages.get(stage_from_file_name(name) or "")
        if self.policy.trust_config is None or rule is None or not rule.identities:
            report.add("SIGSTORE_UNTRUSTED", f"{name}: keyless attestation, but the policy names no Sigstore "
                       "identities and trust_config for this stage", file=name, sequence=bf.number,
                       hint="add identities: and trust_config: to the policy (docs/sigstore.md)")
            return None
        from mlspec_attest.evidence.sigstore import verify_keyless_statement  # lazy: Sigstore is heavy

        try:
            payload, identity = verify_keyless_statement(
                bf.data, trust_config=self.policy.trust_config, identities=list(rule.identities))
        except Exception as exc:  # every refusal is a finding, never a crash
            report.add("SIGNATURE_INVALID", f"{name}: Sigstore verification failed: {exc}", file=name,
                       sequence=bf.number)
            return None
        try:
            statement = StageStatement.from_payload(payload)
        except (InputError, ValueError) as exc:
            report.add("STATEMENT_INVALID", f"{name}: signed by {identity}, but {exc}", file=name,
                       sequence=bf.number)
            return None
        who = getattr(identity, "san", None) or str(identity)
        entry = Entry(file=bf, payload=payload, payload_sha256=sha256_hex(payload), statement=statement,
                      signers=[who], authentic=True)
        seq, stage = statement.chain.sequence, statement.stage.name
        if stage != rule.name:
            entry.authentic = False
            report.add("STAGE_MISMATCH", f"{name}: file names stage {rule.name} but the statement is "
                       f"{stage}", file=name, sequence=seq)
        # The same rules as for keys: a revoked identity does not count, and one certificate is one signature.
        # Only the verified signing time (TSA or transparency log) decides: the claimed finishedOn is the
        # signer's word (a thief backdates it), so without a verified time a revoked identity never counts.
        when = getattr(identity, "signed_at", None)
        revocation = self.policy.revocation_of_identity(who, getattr(identity, "issuer", None))
        if revocation and (when is None or when >= revocation.after):
            entry.authentic = False
            report.add("KEY_REVOKED", f"sequence {seq} ({stage}): signed keylessly by revoked identity {who} "
                       f"({revocation.reason or 'revoked'})", stage=stage, sequence=seq, file=name)
        elif rule.threshold > 1:
            entry.authentic = False
            report.add("THRESHOLD_NOT_MET", f"sequence {seq} ({stage}): 1 keyless signature, policy needs "
                       f"{rule.threshold}", stage=stage, sequence=seq, file=name,
                       hint="a keyless attestation carries one certificate; sign this stage with keys for a threshold")
        return entry

    def _check_signatures(self, entry: Entry, envelope: Envelope, report: Report) -> None:
        assert self.policy is not None
        stage, seq, name = entry.stage, entry.sequence, entry.file.path.name
        rule = self.policy.stages.get(stage)
        if rule is None:
            report.add("STAGE_NOT_ALLOWED", f"sequence {seq}: stage {stage} is not in the policy",
                       stage=stage, sequence=seq, file=name, hint="add the stage to the policy or remove it")
            return
        all_trusted, lies = envelope.check_signatures(self.policy.keys.values())
        for problem in lies:
            report.add("SIGNATURE_TAMPERED", f"sequence {seq} ({stage}): {problem}; mlspec never writes that",
                       stage=stage, sequence=seq, file=name, hint="the envelope was edited; restore it")
        allowed_ids = {k.keyid for k in self.policy.allowed_keys(stage)}
        counted = set()
        for keyid in all_trusted & allowed_ids:
            revocation = self.policy.revocation_of(keyid)  # every entry counts: the earliest wins
            if revocation and revocation.unconditional:
                report.add("KEY_REVOKED", f"sequence {seq} ({stage}): signed by revoked key "
                           f"{self.policy.key_name(keyid)} ({revocation.reason or 'revoked'})",
                           stage=stage, sequence=seq, file=name)
                continue
            if revocation:
                # The time the signer states cannot decide this (a thief writes any time he likes):
                # counted provisionally, then kept only if trusted time proves the signature older
                # than the revocation (verify/revocation.py), else KEY_REVOKED.
                # Every signature, not only those whose (unsigned) keyid field names the key: a foreign or
                # edited envelope may carry an empty or wrong keyid (revocation.py verifies each with the key).
                entry.pending_revocations.extend((keyid, sig.sig) for sig in envelope.signatures)
            counted.add(keyid)
        entry.signers = sorted(self.policy.key_name(k) for k in counted)
        if not all_trusted:
            report.add("SIGNATURE_INVALID", f"sequence {seq} ({stage}): no valid signature by any key the policy "
                       "trusts", stage=stage, sequence=seq, file=name,
                       hint="the attestation was edited, or signed by an unknown key")
        elif not (all_trusted & allowed_ids):
            names = ", ".join(sorted(self.policy.key_name(k) for k in all_trusted))
            report.add("SIGNER_NOT_ALLOWED", f"sequence {seq} ({stage}): signed by {names}, which the policy "
                       f"does not allow for {stage} (allowed: {', '.join(rule.signers) or 'none'})",
                       stage=stage, sequence=seq, file=name)
        elif len(counted) < rule.threshold:
            report.add("THRESHOLD_NOT_MET", f"sequence {seq} ({stage}): {len(counted)} distinct allowed "
                       f"signature(s), policy needs {rule.threshold}", stage=stage, sequence=seq, file=name,
                       hint="have another allowed key co-sign with 'mlspec attest cosign'")
        else:
            entry.authentic = True
