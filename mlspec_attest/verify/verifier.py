"""The deploy gate: verify a bundle against a policy, from files alone.

Each step is a small check that adds findings to a Report; nothing here raises
for a hostile bundle (that is a finding), only for unusable input (InputError).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from mlspec_attest.attest.attestor import ROLE_ANNOTATION
from mlspec_attest.bundle import Bundle, BundleFile, attestation_file_name
from mlspec_attest.digests import MANIFEST_ANNOTATION, digest_path
from mlspec_attest.errors import InputError
from mlspec_attest.model.canonical import parse_json, sha256_hex
from mlspec_attest.model.envelope import IN_TOTO_PAYLOAD_TYPE, Envelope
from mlspec_attest.model.report import WARNING, ObjectiveLine, Report, StageLine
from mlspec_attest.model.stages import resolve
from mlspec_attest.model.statement import StageStatement
from mlspec_attest.policy import Policy, parse_time

MODEL_ROLES = {"model"}
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")
HOLDBACK_ROLES = {"holdback-data", "test-data"}


@dataclass
class Entry:
    """One attestation that parsed; ``authentic`` once its signatures satisfied the policy."""

    file: BundleFile
    payload: bytes
    payload_sha256: str
    statement: StageStatement
    signers: list[str]
    authentic: bool = False

    @property
    def sequence(self) -> int:
        return self.statement.chain.sequence

    @property
    def stage(self) -> str:
        return self.statement.stage.name

    @property
    def time(self) -> str | None:
        value = self.statement.run.get("finishedOn")
        return value if isinstance(value, str) else None


def _role(rd: dict[str, Any]) -> str | None:
    annotations = rd.get("annotations")
    return annotations.get(ROLE_ANNOTATION) if isinstance(annotations, dict) else None


def _digest(rd: dict[str, Any]) -> str:
    return rd["digest"]["sha256"]


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Verifier:
    def __init__(self, policy: Policy, *, now: datetime | None = None):
        self.policy = policy
        self.now = now or _now()

    # -- loading and signatures -------------------------------------------------
    def _parse(self, bf: BundleFile, report: Report) -> Entry | None:
        name = bf.path.name
        if bf.kind == "sigstore":
            return self._parse_sigstore(bf, report)
        # Fast path: the file is byte-for-byte the envelope mlspec writes (the strict path below
        # would accept it and find it byte-stable); anything else takes the strict path.
        envelope = Envelope.from_file_fast(bf.data)
        byte_stable = envelope is not None
        if envelope is None:
            try:
                envelope = Envelope.from_dict(parse_json(bf.data, source=name))
            except (InputError, ValueError) as exc:
                report.add("ENVELOPE_INVALID", f"{name}: not a valid DSSE envelope: {exc}", file=name,
                           sequence=bf.number, hint="the file was damaged or edited; restore it from the pipeline's output")
                return None
        if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
            report.add("PAYLOAD_TYPE", f"{name}: payloadType {envelope.payload_type!r} is not {IN_TOTO_PAYLOAD_TYPE}",
                       file=name, sequence=bf.number)
            return None
        if not byte_stable and bf.data != envelope.to_json():
            # Bundle files are byte-stable: whitespace, base64 alphabet or padding variants mean an edit.
            report.add("ENVELOPE_NOT_CANONICAL", f"{name}: the file is not byte-for-byte the envelope mlspec "
                       "writes (whitespace, field order or base64 form was changed)", file=name,
                       sequence=bf.number, hint="the file was edited; restore it from the pipeline's output")
        try:
            statement = StageStatement.from_payload(envelope.payload)
        except (InputError, ValueError) as exc:
            report.add("STATEMENT_INVALID", f"{name}: {exc}", file=name, sequence=bf.number)
            return None
        entry = Entry(file=bf, payload=envelope.payload, payload_sha256=sha256_hex(envelope.payload),
                      statement=statement, signers=[])
        self._check_signatures(entry, envelope, report)
        return entry

    def _parse_sigstore(self, bf: BundleFile, report: Report) -> Entry | None:
        name = bf.path.name
        rule = self.policy.stages.get(_stage_from_name(name) or "")
        if self.policy.trust_config is None or rule is None or not rule.identities:
            report.add("SIGSTORE_UNTRUSTED", f"{name}: keyless attestation, but the policy names no Sigstore "
                       "identities and trust_config for this stage", file=name, sequence=bf.number,
                       hint="add identities: and trust_config: to the policy (docs/sigstore.md)")
            return None
        from mlspec_attest.evidence.sigstore import IdentityRule, verify_keyless_statement  # lazy: Sigstore is heavy

        try:
            identities = [IdentityRule.from_dict(dict(d), where=f"policy stages.{rule.name}.identities")
                          for d in rule.identities]
            payload, identity = verify_keyless_statement(
                bf.data, trust_config=self.policy.trust_config, identities=identities)
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
        if statement.stage.name != rule.name:
            entry.authentic = False
            report.add("STAGE_MISMATCH", f"{name}: file names stage {rule.name} but the statement is "
                       f"{statement.stage.name}", file=name, sequence=statement.chain.sequence)
        return entry

    def _check_signatures(self, entry: Entry, envelope: Envelope, report: Report) -> None:
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
        when = _time_or_none(entry.time)
        counted = set()
        for keyid in all_trusted & allowed_ids:
            revocation = next((r for r in self.policy.revoked if r.keyid == keyid), None)
            if revocation and (when is None or when >= revocation.after):
                report.add("KEY_REVOKED", f"sequence {seq} ({stage}): signed by revoked key "
                           f"{self.policy.key_name(keyid)} ({revocation.reason or 'revoked'})",
                           stage=stage, sequence=seq, file=name)
                continue
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

    # -- the chain ----------------------------------------------------------------
    def _check_chain(self, entries: list[Entry], report: Report) -> list[Entry]:
        by_seq: dict[int, list[Entry]] = {}
        for e in entries:
            by_seq.setdefault(e.sequence, []).append(e)
        for seq, group in sorted(by_seq.items()):
            if len(group) > 1:
                files = ", ".join(e.file.path.name for e in group)
                report.add("CHAIN_FORK", f"sequence {seq} appears {len(group)} times ({files})", sequence=seq,
                           stage=group[0].stage)
        chain = [sorted(by_seq[s], key=lambda e: e.file.path.name)[0] for s in sorted(by_seq)]
        if not chain:
            report.add("CHAIN_EMPTY", "the bundle holds no readable attestation")
            return chain
        if chain[0].sequence != 0:
            report.add("CHAIN_NO_GENESIS", "no attestation with sequence 0 (the genesis)", sequence=0)
        genesis = chain[0].payload_sha256 if chain[0].sequence == 0 else None
        expected = 0
        for i, e in enumerate(chain):
            if e.sequence != expected:
                missing = f"{expected}" if e.sequence == expected + 1 else f"{expected}..{e.sequence - 1}"
                report.add("CHAIN_GAP", f"sequence {missing} missing before sequence {e.sequence} ({e.stage})",
                           sequence=expected, stage=e.stage, hint="an attestation was removed from the bundle")
            expected = e.sequence + 1
            link = e.statement.chain
            if e.sequence > 0:
                if genesis is not None and link.genesis != genesis:
                    report.add("CHAIN_GENESIS_MISMATCH", f"sequence {e.sequence} ({e.stage}) belongs to another "
                               "chain (its genesis differs)", sequence=e.sequence, stage=e.stage,
                               hint="an attestation from another pipeline run was spliced in")
                prev = chain[i - 1] if i > 0 and chain[i - 1].sequence == e.sequence - 1 else None
                if prev is not None and link.previous != prev.payload_sha256:
                    report.add("CHAIN_LINK_BROKEN", f"sequence {e.sequence} ({e.stage}) does not follow sequence "
                               f"{prev.sequence}: its 'previous' digest differs", sequence=e.sequence, stage=e.stage)
            expected_name = attestation_file_name(e.sequence, e.stage, e.file.kind)
            if e.file.path.name != expected_name:
                report.add("FILE_NAME_MISMATCH", f"{e.file.path.name} holds sequence {e.sequence} ({e.stage}); "
                           f"expected file name {expected_name}", sequence=e.sequence, stage=e.stage,
                           file=e.file.path.name, hint="files were renamed or swapped; restore the bundle")
            if e.time is not None and _time_or_none(e.time) is None:
                report.add("TIME_INVALID", f"sequence {e.sequence} ({e.stage}): run.finishedOn {e.time[:40]!r} is "
                           "not an RFC 3339 time", sequence=e.sequence, stage=e.stage, file=e.file.path.name)
            if i > 0 and _later(chain[i - 1].time, e.time):
                report.add("CHAIN_TIME_REGRESSION", f"sequence {e.sequence} ({e.stage}) claims a time "
                           f"({e.time}) before its predecessor's ({chain[i - 1].time})", sequence=e.sequence,
                           stage=e.stage)
        return chain

    def _check_stages(self, chain: list[Entry], report: Report) -> None:
        seen: dict[str, int] = {}
        last_order = 0
        for e in chain:
            order = e.statement.stage.order
            in_group = e.stage in self.policy.interleave
            if e.stage == "objectives" and e.sequence != 0:
                report.add("STAGE_ORDER", f"sequence {e.sequence}: objectives may only be the genesis "
                           "(sequence 0); criteria cannot change after the pipeline started",
                           sequence=e.sequence, stage=e.stage)
            elif order < last_order and not (in_group and _order_of(self.policy.interleave) <= last_order):
                report.add("STAGE_ORDER", f"sequence {e.sequence}: stage {e.stage} comes after a later lifecycle "
                           "stage", sequence=e.sequence, stage=e.stage)
            last_order = max(last_order, order)
            seen[e.stage] = seen.get(e.stage, 0) + 1
            rule = self.policy.stages.get(e.stage)
            if rule and seen[e.stage] == 2 and not rule.repeat:
                report.add("STAGE_REPEATED", f"sequence {e.sequence}: stage {e.stage} appears more than once "
                           "and the policy does not allow it to repeat", sequence=e.sequence, stage=e.stage)
        for name, rule in self.policy.stages.items():
            if rule.required and name not in seen:
                report.add("STAGE_MISSING", f"required stage {name} is missing from the chain", stage=name,
                           hint=f"run 'mlspec attest stage {name} ...' in the pipeline")
        if self.policy.objectives_required and chain and chain[0].stage != "objectives":
            report.add("CHAIN_NO_OBJECTIVES", "the chain does not start with the objectives (sequence 0)",
                       sequence=0, stage="objectives")

    def _check_time(self, chain: list[Entry], report: Report) -> None:
        p = self.policy
        if p.expires is not None and self.now > p.expires:
            report.add("POLICY_EXPIRED", f"policy {p.source} expired at {p.expires.isoformat()}",
                       hint="have the policy owner review and re-issue it")
        for e in chain:
            when = _time_or_none(e.time)
            if p.max_age is not None and (when is None or self.now - when > p.max_age):
                report.add("ATTESTATION_TOO_OLD", f"sequence {e.sequence} ({e.stage}) is older than the "
                           f"policy's max_age (or states no valid time)", sequence=e.sequence, stage=e.stage)
        if p.freshness is not None and chain:
            newest = _time_or_none(chain[-1].time)
            if newest is None or self.now - newest > p.freshness:
                report.add("CHAIN_STALE", f"the newest attestation (sequence {chain[-1].sequence}, "
                           f"{chain[-1].stage}) is older than the policy's freshness bound; the bundle may have "
                           "been truncated", sequence=chain[-1].sequence, stage=chain[-1].stage)

    def _check_head(self, bundle: Bundle, chain: list[Entry], report: Report) -> None:
        """Trust roots stay outside the bundle; the signed chain head refuses truncation and rollback."""
        if self.policy.source.resolve().is_relative_to(bundle.root.resolve()):
            report.add("POLICY_IN_BUNDLE", f"the policy {self.policy.source} lies inside the bundle it is to judge; "
                       "whoever controls the bundle would choose the rules", hint="keep the policy in the deploy "
                       "system's repository and pass it with --policy")
        from mlspec_attest.verify.head import check_head

        check_head(self.policy, bundle, chain, report, self.now)

    # -- artifact flow ----------------------------------------------------------
    def _check_flow(self, chain: list[Entry], report: Report) -> None:
        produced: set[str] = set()
        latest: dict[str, Entry] = {}
        for e in chain:
            if e.stage != "ingest":
                for m in e.statement.materials:
                    role = _role(m)
                    if _digest(m) not in produced and role not in self.policy.external_roles:
                        report.add("MATERIAL_UNKNOWN", f"sequence {e.sequence} ({e.stage}): material "
                                   f"{m.get('name')} was not produced by an earlier stage nor declared by ingest",
                                   sequence=e.sequence, stage=e.stage,
                                   hint="attest it as a product of the stage that made it, or as an ingest material")
            for rd in e.statement.subjects + (e.statement.materials if e.stage == "ingest" else []):
                produced.add(_digest(rd))
            latest[e.stage] = e

        train = latest.get("train")
        if train is not None:
            models = {_digest(s) for s in train.statement.subjects if _role(s) in MODEL_ROLES}
            models = models or {_digest(s) for s in train.statement.subjects}
            for stage in ("evaluate", "test", "package"):
                e = latest.get(stage)
                if e is None:
                    continue
                used = [m for m in e.statement.materials if _role(m) in MODEL_ROLES]
                if not used:
                    report.add("MODEL_NOT_DECLARED", f"sequence {e.sequence} ({stage}): no material with role "
                               "'model'; cannot prove which model it used", sequence=e.sequence, stage=stage,
                               hint=f"pass --material model=PATH to 'mlspec attest stage {stage}'")
                for m in used:
                    if _digest(m) not in models:
                        report.add("MODEL_MISMATCH", f"sequence {e.sequence} ({stage}): model {m.get('name')} "
                                   f"(sha256 {_digest(m)[:12]}…) is not the model trained at sequence "
                                   f"{train.sequence}", sequence=e.sequence, stage=stage)
        split, test, evaluate = latest.get("split"), latest.get("test"), latest.get("evaluate")
        if test is not None:
            test_data = {_digest(m) for m in test.statement.materials if _role(m) in HOLDBACK_ROLES}
            if not test_data:
                report.add("TEST_DATA_NOT_DECLARED", f"sequence {test.sequence} (test): no material with role "
                           "'holdback-data'", sequence=test.sequence, stage="test",
                           hint="pass --material holdback-data=PATH")
            if split is not None and test_data:
                holdback = {_digest(s) for s in split.statement.subjects if _role(s) in HOLDBACK_ROLES}
                if not test_data <= holdback:
                    report.add("TEST_DATA_NOT_HOLDBACK", f"sequence {test.sequence} (test): test data is not the "
                               f"hold-back set produced by split (sequence {split.sequence})",
                               sequence=test.sequence, stage="test")
            for other in (evaluate, train):
                if other is None:
                    continue
                other_data = {_digest(m) for m in other.statement.materials
                              if _role(m) not in MODEL_ROLES and _role(m) not in self.policy.external_roles}
                overlap = test_data & other_data
                if overlap:
                    report.add("TEST_DATA_REUSED", f"sequence {test.sequence} (test): attested on the same data as "
                               f"{other.stage} (sequence {other.sequence}); the test must use its own hold-back "
                               "set", sequence=test.sequence, stage="test")

    def _check_rollback(self, chain: list[Entry], report: Report) -> None:
        """A monitor's rollback target must be a package this chain attested earlier."""
        packaged: set[str] = set()
        for e in chain:
            if e.stage == "package" and e.authentic:
                packaged.update(_digest(s) for s in e.statement.subjects)
            target = e.statement.metadata.get("rollback_target") if e.stage == "monitor" else None
            if isinstance(target, dict):
                digest = (target.get("digest") or {}).get("sha256")
                if digest not in packaged:
                    report.add("ROLLBACK_TARGET_UNKNOWN", f"sequence {e.sequence} (monitor): rollback target "
                               f"{target.get('name')} is not a package attested earlier in this chain",
                               sequence=e.sequence, stage="monitor",
                               hint="name the digest of an earlier package stage's subject")

    def _check_leakage(self, bundle: Bundle, chain: list[Entry], report: Report) -> None:
        """Prove train and hold-back sets disjoint when split attested row fingerprints."""
        from mlspec_attest.leakage import HOLDBACK_ROLE, TRAIN_ROLE, overlap, parse_fingerprints

        split = next((e for e in reversed(chain) if e.stage == "split"), None)
        if split is None:
            return
        sets: dict[str, list[int]] = {}
        for s in split.statement.subjects:
            role = _role(s)
            if role not in (TRAIN_ROLE, HOLDBACK_ROLE):
                continue
            blob = bundle.root / "blobs" / _digest(s)
            try:
                data = blob.read_bytes()
                if sha256_hex(data) != _digest(s):
                    raise ValueError("differs from the digest split signed")
                sets[role] = parse_fingerprints(data, s.get("name", role))
            except (OSError, ValueError) as exc:
                report.add("LEAKAGE_EVIDENCE_INVALID", f"sequence {split.sequence} (split): fingerprints "
                           f"{s.get('name')}: {exc}", sequence=split.sequence, stage="split")
        if TRAIN_ROLE in sets and HOLDBACK_ROLE in sets:
            shared = overlap(sets[TRAIN_ROLE], sets[HOLDBACK_ROLE])
            if shared:
                report.add("LEAKAGE", f"sequence {split.sequence} (split): {shared} row(s) of the hold-back set "
                           f"also appear in the training set (of {len(sets[HOLDBACK_ROLE])} hold-back rows)",
                           sequence=split.sequence, stage="split",
                           hint="re-split so the hold-back set shares no rows with training")

    def _check_artifacts(self, chain: list[Entry], artifacts: Iterable[str | os.PathLike[str]],
                         report: Report) -> None:
        packages = [e for e in chain if e.stage == "package"]
        for artifact in artifacts:
            digest = digest_path(artifact)
            record: dict[str, Any] = {"path": os.fspath(artifact), "sha256": digest.sha256, "matched": None}
            report.artifacts.append(record)
            if not packages:
                report.add("ARTIFACT_NOT_PACKAGED", f"{artifact}: the chain has no package stage to bind it to",
                           stage="package")
                continue
            pkg = packages[-1]
            for s in pkg.statement.subjects:
                annotations = s.get("annotations") or {}
                if _digest(s) == digest.sha256 and annotations.get(MANIFEST_ANNOTATION) == digest.manifest_sha256:
                    record["matched"] = {"sequence": pkg.sequence, "name": s.get("name")}
                    break
            else:
                report.add("ARTIFACT_MISMATCH", f"{artifact} (sha256 {digest.sha256[:12]}…) is not a product of the "
                           f"package stage (sequence {pkg.sequence}); refusing to deploy it", stage="package",
                           sequence=pkg.sequence)

    # -- external evidence ----------------------------------------------------------
    def _check_evidence(self, bundle: Bundle, chain: list[Entry], report: Report) -> None:
        for e in chain:
            rule = self.policy.stages.get(e.stage)
            present: list[tuple[dict[str, Any], Path]] = []
            for rd in e.statement.evidence:
                path = bundle.root / rd["name"]
                if not path.resolve().is_relative_to(bundle.root.resolve() / "evidence"):
                    report.add("EVIDENCE_INVALID", f"sequence {e.sequence} ({e.stage}): evidence name {rd['name']} "
                               "points outside evidence/", sequence=e.sequence, stage=e.stage)
                elif not path.is_file():
                    report.add("EVIDENCE_MISSING", f"sequence {e.sequence} ({e.stage}): evidence file "
                               f"{rd['name']} is missing from the bundle", sequence=e.sequence, stage=e.stage)
                elif digest_path(path).sha256 != _digest(rd):
                    report.add("EVIDENCE_TAMPERED", f"sequence {e.sequence} ({e.stage}): evidence file "
                               f"{rd['name']} differs from the digest the stage signed", sequence=e.sequence,
                               stage=e.stage)
                else:
                    present.append((rd, path))
            for i, ev_rule in enumerate(rule.evidence if rule else ()):
                label = ev_rule.get("name", f"evidence[{i}]")
                reasons = [self._evidence_attempt(ev_rule, e, path) for _, path in present]
                if "" not in reasons:
                    why = "; ".join(r for r in reasons if r) or "no evidence attached"
                    report.add("EVIDENCE_UNSATISFIED", f"sequence {e.sequence} ({e.stage}): policy evidence rule "
                               f"{label} not met: {why}", sequence=e.sequence, stage=e.stage,
                               hint=f"attach it with 'mlspec attest stage {e.stage} --evidence FILE'")

    def _evidence_attempt(self, ev_rule: dict[str, Any], e: Entry, path: Path) -> str:
        """Empty string when this evidence file satisfies the rule, else why not."""
        from mlspec_attest.evidence.sigstore import EvidenceVerificationError, IdentityRule, verify_bundle

        role = ev_rule.get("subject_role")
        candidates = [_digest(m) for m in e.statement.materials if role is None or _role(m) == role]
        if not candidates:
            return f"the stage has no material{' with role ' + role if role else ''} for the evidence to cover"
        key = ev_rule.get("key")
        key_path = (self.policy.source.parent / key) if key else None
        identities = [IdentityRule.from_dict(dict(d), where="policy evidence identities")
                      for d in ev_rule.get("identities", ())]
        problems = []
        for digest in candidates:
            try:
                result = verify_bundle(path, trust_config=self.policy.trust_config, digest=f"sha256:{digest}",
                                       identities=identities or None, key=key_path)
            except (EvidenceVerificationError, InputError) as exc:
                problems.append(str(exc))
                continue
            wanted = ev_rule.get("predicate_type")
            if wanted and result.predicate_type != wanted:
                problems.append(f"predicate type {result.predicate_type} is not {wanted}")
                continue
            return ""
        return f"{path.name}: {problems[-1] if problems else 'not verified'}"

    # -- objectives and checks ----------------------------------------------------
    def _check_objectives(self, chain: list[Entry], report: Report) -> None:
        if not chain or chain[0].stage != "objectives" or not chain[0].authentic:
            return
        from mlspec_attest.objectives.criteria import Objectives, evaluate  # lazy: CEL

        try:
            objectives = Objectives.from_dict(chain[0].statement.metadata, source="objectives attestation")
        except InputError as exc:
            report.add("OBJECTIVES_INVALID", f"sequence 0 (objectives): {exc}", sequence=0, stage="objectives")
            return
        latest = {e.stage: e.statement.metadata for e in chain if e.authentic}
        for r in evaluate(objectives, latest):
            report.objectives.append(ObjectiveLine(
                name=r.name, stage=r.stage, expression=r.expression, severity=r.severity, passed=r.passed,
                values=dict(r.values), message=r.message, description=getattr(r, "description", "")))
            if not r.passed:
                report.add("OBJECTIVE_FAILED" if r.severity == "block" else "OBJECTIVE_WARNING",
                           f"criterion {r.name} ({r.stage}: {r.expression}) failed: {r.message}",
                           severity="error" if r.severity == "block" else WARNING, stage=r.stage)

    def _check_policy_checks(self, chain: list[Entry], report: Report) -> None:
        if not any(rule.checks for rule in self.policy.stages.values()):
            return
        from celpy import celtypes

        from mlspec_attest.objectives.cel import ExpressionError, compile_expression, evaluate_expression  # lazy: CEL

        variables = ("subject", "materials", "metadata", "run", "predicate")
        compiled = {}
        for rule in self.policy.stages.values():
            for check in rule.checks:
                try:
                    compiled[check.expression] = compile_expression(check.expression, variables)
                except ExpressionError as exc:
                    raise InputError(f"{self.policy.source}: stages.{rule.name} check {check.name}: "
                                     f"{exc.position()}: {exc.reason}; fix the expression") from None
        for e in chain:
            rule = self.policy.stages.get(e.stage)
            for check in (rule.checks if rule else ()):
                outcome = evaluate_expression(compiled[check.expression], {
                    "subject": e.statement.subjects, "materials": e.statement.materials,
                    "metadata": e.statement.metadata, "run": e.statement.run,
                    "predicate": e.statement.raw.get("predicate", {})})
                ok = (outcome.error is None and not outcome.missing
                      and isinstance(outcome.value, celtypes.BoolType) and bool(outcome.value))
                if not ok:
                    detail = outcome.error or (f"missing {', '.join(outcome.missing)}" if outcome.missing
                                               else f"result {outcome.value!r}")
                    report.add("CHECK_FAILED", f"sequence {e.sequence} ({e.stage}): policy check {check.name} "
                               f"({check.expression}) failed: {detail}", sequence=e.sequence, stage=e.stage)

    # -- entry point ----------------------------------------------------------------
    def verify(self, bundle_dir: str | os.PathLike[str], artifacts: Iterable[str | os.PathLike[str]] = ()) -> Report:
        # The cyclic garbage collector is paused while verifying: a long chain allocates millions
        # of small containers and every full collection re-scans all of them (measured: a third
        # of the time of a 10,000-chain, and 4x the cost of unpickling the workers' results).
        # Verification creates no reference cycles worth collecting; refcounting frees the rest.
        import gc

        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            bundle = Bundle(bundle_dir)
            report = Report(bundle=os.fspath(bundle_dir), policy=str(self.policy.source),
                            policy_sha256=self.policy.digest, verified_at=self.now.strftime("%Y-%m-%dT%H:%M:%SZ"))
            from mlspec_attest.verify._parallel import parse_bundle  # per-file checks on every core for long chains

            entries = parse_bundle(self, bundle, report)  # == parallel.parse_entries(self, bundle.files(), report)
            chain = self._check_chain(entries, report)
            self._check_stages(chain, report)
            self._check_time(chain, report)
            self._check_head(bundle, chain, report)
            if self.policy.artifact_flow:
                self._check_flow(chain, report)
            self._check_artifacts(chain, artifacts, report)
            self._check_evidence(bundle, chain, report)
            self._check_leakage(bundle, chain, report)
            self._check_rollback(chain, report)
            self._check_objectives(chain, report)
            self._check_policy_checks(chain, report)
            failed = {f.sequence for f in report.findings if f.severity == "error"}
            for e in chain:
                ok = e.authentic and e.sequence not in failed
                report.stages.append(StageLine(sequence=e.sequence, stage=e.stage, file=e.file.path.name,
                                               signers=e.signers, time=e.time, subjects=e.statement.subjects,
                                               materials=e.statement.materials, payload_sha256=e.payload_sha256,
                                               ok=ok, metadata=e.statement.metadata))
        finally:
            if gc_was_enabled:
                gc.enable()
        return report


def _time_or_none(value: str | None) -> datetime | None:
    """A signed time as an aware datetime, or None when absent or not RFC 3339 (a finding, not a crash)."""
    if not value or not _RFC3339.fullmatch(value):
        return None
    try:
        return parse_time(value, "run.finishedOn")
    except InputError:
        return None


def _later(first: str | None, second: str | None) -> bool:
    """True when both times parse and ``first`` is after ``second`` (compared as instants, not strings)."""
    a, b = _time_or_none(first), _time_or_none(second)
    return a is not None and b is not None and a > b


def _order_of(names: Iterable[str]) -> int:
    return min(resolve(n).order for n in names)


def _stage_from_name(file_name: str) -> str | None:
    parts = file_name.split("-", 1)
    if len(parts) == 2:
        try:
            return resolve(parts[1].split(".", 1)[0]).name
        except InputError:
            return None
    return None


def verify_bundle(bundle_dir: str | os.PathLike[str], policy: Policy | str | os.PathLike[str],
                  artifacts: Iterable[str | os.PathLike[str]] = (), *, now: datetime | None = None) -> Report:
    """Verify a bundle; the one call a deploy gate needs."""
    policy_obj = policy if isinstance(policy, Policy) else Policy.from_file(policy)
    return Verifier(policy_obj, now=now).verify(bundle_dir, artifacts)
