"""The gate's own rules, applied to one append before it is written (``mlspec attest`` failing early).

A second train after package, a revoked key, a clock far behind: appended, each of
these fails only at ``mlspec verify``, and the only repair is deleting files (which the
signed head then reports as a rollback). ``AppendGate`` runs the very functions the gate
runs (chain.build_chain and check_stage_order, clock.check_time, the signature reader,
revocation, the objectives' pin and vacuity) over the chain as it would be with the new
statement, and returns the error findings that concern the new attestation.

What it does not judge, on purpose: whether the new stage's metrics meet the objectives
(a failed evaluation is history the chain must record, not hide), required stages that
are still to come, and a threshold that co-signatures (``mlspec attest cosign``) will meet
after the append. The gate still judges all of that, and it reads its own policy: the
policy a pipeline attested under decides nothing at verify time.

The writer (attest/) never imports the gate: ``Attestor(policy=AppendGate(...))`` is
handed this object and calls its two methods (attest/attestor.py, ``AppendPolicy``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from mlspec_attest.bundle import ATTESTATIONS, Bundle, BundleFile, attestation_file_name, read_attestation_file
from mlspec_attest.keys import PublicKey
from mlspec_attest.model.canonical import sha256_hex
from mlspec_attest.model.report import ERROR, Finding, Report
from mlspec_attest.model.statement import StageStatement
from mlspec_attest.policy import Policy
from mlspec_attest.verify import chain, clock, criteria, revocation
from mlspec_attest.verify._parallel import list_bundle
from mlspec_attest.verify.context import Entry, VerifyContext, stage_from_file_name
from mlspec_attest.verify.signatures import EntryReader

# Findings about the whole policy, not one attestation, that still mean "the gate will refuse this append".
_POLICY_WIDE = frozenset({"POLICY_EXPIRED"})
# The new attestation's findings that an append cannot be refused for: the threshold is met by co-signing after.
_LATER = frozenset({"THRESHOLD_NOT_MET"})


class AppendGate:
    """One policy's rules for appending; ``now`` is injectable for tests."""

    def __init__(self, policy: Policy, *, now: Callable[[], datetime] | None = None) -> None:
        self.policy = policy
        self._now = now or (lambda: datetime.now(timezone.utc))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> AppendGate:
        return cls(Policy.from_file(path))

    @property
    def source(self) -> str:
        return str(self.policy.source)

    def head_keys(self) -> tuple[PublicKey, ...]:
        """The head signers whose head a writer may believe now: not revoked, or revoked only from a later time.

        A key revoked as of now may be in an attacker's hands (a head it signs could name a
        shortened tip); one whose revocation starts tomorrow is still the team's (rotation).
        """
        rule = self.policy.head
        if rule is None:
            return ()
        revoked = self.distrusted_keyids()
        return tuple(k for k in (self.policy.keys[n] for n in rule.signers) if k.keyid not in revoked)

    def distrusted_keyids(self) -> frozenset[str]:
        """Keys revoked as of now: no head they sign is believed, a writer's own head keys included."""
        now = self._now()
        return frozenset(r.keyid for r in self.policy.revoked if r.keyid is not None and r.after <= now)

    def check_statement(self, bundle: Bundle, payload: bytes) -> list[Finding]:
        """Order, repeats, genesis, times and the objectives' validity of the would-be next statement.

        Run before signing (keyless signing publishes to a transparency log): the existing
        entries are read without checking their signatures (the gate does that; their stage,
        sequence and time are what the order and clock rules read).
        """
        existing = self._report()  # the existing files' own findings are the gate's business, not this append's
        reader = EntryReader(None)
        entries = [e for bf in self._deciding_files(bundle) if (e := reader.read(bf, existing)) is not None]
        statement = StageStatement.from_payload(payload)
        candidate = Entry(file=self._file(bundle, statement, b""), payload=payload,
                          payload_sha256=sha256_hex(payload), statement=statement, signers=[], authentic=True)
        report = self._report()
        ordered = chain.build_chain([*entries, candidate], report, skew=self.policy.clock_skew)
        ctx = VerifyContext(policy=self.policy, now=self._now(), bundle=bundle, report=report, chain=ordered)
        chain.check_stage_order(ctx)
        clock.check_time(ctx)
        if candidate.sequence == 0:
            criteria.check_objectives(VerifyContext(policy=self.policy, now=ctx.now, bundle=bundle, report=report,
                                                    chain=[candidate]))
        return self._about(report, candidate)

    def check_signatures(self, bundle: Bundle, payload: bytes, data: bytes, kind: str) -> list[Finding]:
        """Signed by a key (or identity) the policy allows for this stage, and not revoked now."""
        report = self._report()
        statement = StageStatement.from_payload(payload)
        entry = EntryReader(self.policy).read(self._file(bundle, statement, data, kind), report)
        if entry is not None:
            revocation.check_signed_now(VerifyContext(policy=self.policy, now=self._now(), bundle=bundle,
                                                      report=report, chain=[entry]), entry)
        return self._about(report, None, sequence=statement.chain.sequence)

    @staticmethod
    def _deciding_files(bundle: Bundle) -> list[BundleFile]:
        """The existing files whose content decides the rules for the next append, read; the rest only listed.

        For the new attestation, the order and repeat rules depend only on which stages the
        chain already holds (the first file of each stage name), the clock and link rules on
        the newest file, the genesis rules on sequence 0. Reading those (at most 15 files)
        instead of every file keeps an append to a 10,000-attestation chain as fast as the
        append itself. File names are the signer's word until the gate checks them
        (FILE_NAME_MISMATCH); the gate, not this pre-check, is the boundary.
        """
        if bundle.is_remote:
            # An object store: listed and read through the seam, every object bounded (store/s3.py).
            return bundle.files() if bundle.head() is not None else []
        if not bundle.attestations_dir.is_dir():
            return []
        chosen: dict[str, tuple[Path, int | None, str]] = {}  # by file name
        stages: set[str] = set()
        newest: tuple[Path, int | None, str] | None = None
        for path, number, kind in list_bundle(bundle):
            stage = stage_from_file_name(path.name)
            if number is None or number == 0 or stage is None or stage not in stages:
                chosen[path.name] = (path, number, kind)  # stray names are read too: the gate reports them
                stages.add(stage or "")
            if number is not None and (newest is None or number > (newest[1] or 0)):
                newest = (path, number, kind)
        if newest is not None:
            chosen[newest[0].name] = newest
        return [BundleFile(path=path, number=number, kind=kind, data=read_attestation_file(path))
                for path, number, kind in chosen.values()]

    def _report(self) -> Report:
        return Report(bundle="", policy=self.source, policy_sha256=self.policy.digest)

    @staticmethod
    def _file(bundle: Bundle, statement: StageStatement, data: bytes, kind: str = "dsse") -> BundleFile:
        name = attestation_file_name(statement.chain.sequence, statement.stage.name, kind)
        folder = Path(ATTESTATIONS) if bundle.is_remote else bundle.attestations_dir
        return BundleFile(path=folder / name, number=statement.chain.sequence, kind=kind, data=data)

    @staticmethod
    def _about(report: Report, candidate: Entry | None, *, sequence: int | None = None) -> list[Finding]:
        seq = candidate.sequence if candidate is not None else sequence
        return [f for f in report.findings if f.severity == ERROR and f.code not in _LATER
                and (f.sequence == seq or f.code in _POLICY_WIDE)]
