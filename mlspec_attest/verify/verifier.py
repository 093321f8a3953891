"""The deploy gate: verify a bundle against a policy, from files alone.

The verifier reads every attestation (``signatures``), orders them into one chain
(``chain``), then runs a list of small checks over it, each adding findings to one
Report. Nothing here raises for a hostile bundle (that is a finding), only for
unusable input (``InputError``). The generic chain checks come first; the ML rules
(``lineage``, ``leakage``, ``criteria``) are separate modules.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path

from mlspec_attest.bundle import Bundle
from mlspec_attest.errors import InputError
from mlspec_attest.model.formats import format_utc
from mlspec_attest.model.report import Report, StageLine
from mlspec_attest.model.stages import DEFAULT_PHASE, Phase, resolve_phase
from mlspec_attest.policy import Policy
from mlspec_attest.store import open_bundle
from mlspec_attest.verify import (
    _kept,
    artifacts,
    chain,
    clock,
    criteria,
    evidence,
    head,
    inference_log,
    leakage,
    lineage,
    releases,
    revocation,
)
from mlspec_attest.verify._parallel import parse_bundle
from mlspec_attest.verify.context import VerifyContext
from mlspec_attest.verify.signatures import EntryReader

Check = Callable[[VerifyContext], None]


def _artifact_flow(ctx: VerifyContext) -> None:
    if ctx.policy.artifact_flow:
        lineage.check_artifact_flow(ctx)


CHECKS: tuple[Check, ...] = (
    revocation.check_revocations,  # first: it decides which entries are authentic
    _kept.restore_latest,  # then the latest (authentic) entry of each stage is read whole
    chain.check_stage_order,
    clock.check_time,
    head.check_policy_outside_bundle,
    head.check_head,
    releases.check_predecessor,  # before rollback targets and criteria: they read the verified line
    _artifact_flow,
    artifacts.check_artifacts,
    evidence.check_evidence,
    leakage.check_leakage,
    lineage.check_rollback_target,
    lineage.check_metadata_schema,
    lineage.check_deprecated_data,
    lineage.check_subject_names,
    lineage.check_package_contents,
    lineage.check_deployment_links,
    lineage.check_metadata_sources,
    lineage.check_metrics_binding,
    lineage.check_training_data,
    lineage.check_served_model,
    criteria.check_objectives,
    criteria.check_policy_checks,
    inference_log.check_inference_log,
    criteria.check_policy_weaknesses,
)
"""Every check the gate runs over a parsed chain, in the order their findings are reported."""


class Verifier:
    """Verifies bundles under one policy; ``now`` is injectable for reproducible audits.

    ``phase`` (model/stages.py): ``full`` (default) requires everything the policy does;
    ``deploy`` requires the stages up to package only. Present attestations are judged in full.
    """

    def __init__(self, policy: Policy, *, now: datetime | None = None, phase: str | Phase = DEFAULT_PHASE,
                 releases: str | os.PathLike[str] | None = None, release_line: frozenset[str] = frozenset()) -> None:
        self.policy = policy
        self.now = now or datetime.now(timezone.utc)
        self.phase = resolve_phase(phase)
        self.reader = EntryReader(policy)
        self.releases = Path(releases) if releases is not None else None  # the release history directory
        if self.releases is not None and not self.releases.is_dir():
            raise InputError(f"{releases}: release history directory not found (--releases DIR: one bundle per "
                             "release)")
        self.release_line = release_line
        # Predecessor verifications of one gate run, by (bundle directory, release line): shared with
        # every sub-verifier, so a hostile history costs one verification per bundle, not n**depth.
        self._release_cache: dict[tuple[Path, frozenset[str]], VerifyContext] = {}

    def verify(self, bundle_dir: str | os.PathLike[str], artifacts: Iterable[str | os.PathLike[str]] = (), *,
               log_dir: str | os.PathLike[str] | None = None) -> Report:
        # The cyclic garbage collector is paused while verifying: a long chain allocates millions
        # of small containers and every full collection re-scans all of them (measured: a third
        # of the time of a 10,000-chain, and 4x the cost of unpickling the workers' results).
        # Verification creates no reference cycles worth collecting; refcounting frees the rest.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._verify(open_bundle(bundle_dir), os.fspath(bundle_dir), list(artifacts), log_dir).report
        finally:
            if gc_was_enabled:
                gc.enable()

    def verify_context(self, bundle_dir: str | os.PathLike[str]) -> VerifyContext:
        """Like ``verify``, but the whole context: the report and the chain exactly as the gate built it
        (with its authenticity marks), for callers that act on the verified entries (run branch, releases)."""
        return self._verify(open_bundle(bundle_dir), os.fspath(bundle_dir), [], None)

    def _verify_other(self, bundle_dir: Path, release_line: frozenset[str]) -> VerifyContext:
        """Another bundle (a predecessor release) under the same policy, clock and release history (memoised)."""
        key = (Path(bundle_dir).resolve(), release_line)
        if key not in self._release_cache:
            other = Verifier(self.policy, now=self.now, releases=self.releases, release_line=release_line)
            other._release_cache = self._release_cache
            self._release_cache[key] = other.verify_context(bundle_dir)
        return self._release_cache[key]

    def _verify(self, bundle: Bundle, label: str, artifact_paths: list[str | os.PathLike[str]],
                log_dir: str | os.PathLike[str] | None = None) -> VerifyContext:
        report = Report(bundle=label, policy=str(self.policy.source), policy_sha256=self.policy.digest,
                        verified_at=format_utc(self.now), phase=self.phase.name)
        entries = parse_bundle(self.reader, bundle, report)  # per-file checks, on every core for long chains
        ordered = chain.build_chain(entries, report, skew=self.policy.clock_skew)
        ctx = VerifyContext(policy=self.policy, now=self.now, bundle=bundle, report=report, chain=ordered,
                            artifacts=artifact_paths,
                            log_dir=os.fspath(log_dir) if log_dir is not None else None, phase=self.phase,
                            releases=self.releases, release_line=self.release_line,
                            verify_other=self._verify_other)
        for check in CHECKS:
            check(ctx)
        failed = {f.sequence for f in report.findings if f.severity == "error"}
        for e in ctx.chain:
            report.stages.append(StageLine(sequence=e.sequence, stage=e.stage, file=e.file.path.name,
                                           signers=e.signers, time=e.time, subjects=e.statement.subjects,
                                           materials=e.statement.materials, payload_sha256=e.payload_sha256,
                                           ok=e.authentic and e.sequence not in failed,
                                           metadata=e.statement.metadata))
        return ctx


def verify_bundle(bundle_dir: str | os.PathLike[str], policy: Policy | str | os.PathLike[str],
                  artifacts: Iterable[str | os.PathLike[str]] = (), *, now: datetime | None = None,
                  log_dir: str | os.PathLike[str] | None = None,
                  releases: str | os.PathLike[str] | None = None, phase: str | Phase = DEFAULT_PHASE) -> Report:
    """Verify a bundle; the one call a deploy gate needs (``log_dir``: the inference log it seals;
    ``releases``: the release history its declared predecessor is found in; ``phase``: deploy or full)."""
    policy_obj = policy if isinstance(policy, Policy) else Policy.from_file(policy)
    return Verifier(policy_obj, now=now, releases=releases, phase=phase).verify(bundle_dir, artifacts, log_dir=log_dir)
