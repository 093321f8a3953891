"""The thirteen lifecycle stages, their order and aliases (DESIGN.md, "Stages")."""

from __future__ import annotations

from dataclasses import dataclass

from mlspec_attest.errors import InputError

PREDICATE_TYPE_PREFIX = "https://mlspec.org/attestation/"


@dataclass(frozen=True)
class Stage:
    name: str
    order: int  # 1-based lifecycle position
    aliases: tuple[str, ...]
    summary: str

    @property
    def predicate_type(self) -> str:
        return f"{PREDICATE_TYPE_PREFIX}{self.name}/v1"


STAGES: tuple[Stage, ...] = (
    Stage("objectives", 1, ("codify-objectives",), "model outputs, possible errors, success criteria"),
    Stage("ingest", 2, ("ingestion",), "connectors, queries, signed source datasets, sharding, labelling"),
    Stage("analyze", 3, ("analysis",), "statistics per feature and slice, outliers"),
    Stage("transform", 4, ("transformation",), "conversions, feature maps, outliers removed"),
    Stage("validate", 5, ("validation",), "schema version, checks applied, results"),
    Stage("split", 6, ("splitting",), "train / validation / hold-back sets, stats, leakage evidence"),
    Stage("train", 7, ("training", "tuning"), "framework, distribution, hyperparameters, conversions"),
    Stage("evaluate", 8, ("evaluation",), "metrics overall and on slices, validation data"),
    Stage("test", 9, ("testing",), "hold-back results and data source"),
    Stage("package", 10, ("packaging",), "contents, security constraints, monitoring agents, infrastructure"),
    Stage("serve", 11, ("serving",), "roll-out results"),
    Stage("monitor", 12, ("monitoring",), "signals, thresholds, rollback target"),
    Stage("log", 13, ("logging",), "per-inference records bound to the pipeline version"),
)

_BY_NAME: dict[str, Stage] = {}
for _stage in STAGES:
    _BY_NAME[_stage.name] = _stage
    for _alias in _stage.aliases:
        _BY_NAME[_alias] = _stage


def resolve(name: str) -> Stage:
    """Return the stage for a canonical name or alias (case-insensitive)."""
    stage = _BY_NAME.get(name.strip().lower())
    if stage is None:
        known = ", ".join(s.name for s in STAGES)
        raise InputError(f"unknown stage {name!r}: use one of {known} (or their long names)")
    return stage


def from_predicate_type(predicate_type: str) -> Stage | None:
    """The stage a predicate type names, or None for a foreign type."""
    if not predicate_type.startswith(PREDICATE_TYPE_PREFIX):
        return None
    rest = predicate_type[len(PREDICATE_TYPE_PREFIX):]
    name, _, version = rest.partition("/")
    if version != "v1":
        return None
    return _BY_NAME.get(name) if name in {s.name for s in STAGES} else None


# --------------------------------------------------------------------------- phases

@dataclass(frozen=True)
class Phase:
    """How far along the lifecycle a verification judges: which stages must exist and be judged.

    A phase only relaxes what must *exist*: every attestation that is present is checked
    (signatures, links, order, trust, lineage and the criteria of its stage) whatever the
    phase, so a phase can never be used to wave a forged later stage through.
    """

    name: str
    last_stage: str | None  # the last stage whose presence and criteria are required; None: all of them
    summary: str

    def requires(self, stage: str) -> bool:
        """True when the phase requires ``stage`` (if the policy does) and judges its criteria even when absent."""
        return self.last_stage is None or resolve(stage).order <= resolve(self.last_stage).order


DEPLOY_PHASE = Phase("deploy", "package", "before serving: every stage up to and including package")
FULL_PHASE = Phase("full", None, "everything the policy requires, serve and monitor included")
PHASES: tuple[Phase, ...] = (DEPLOY_PHASE, FULL_PHASE)
DEFAULT_PHASE = FULL_PHASE


def resolve_phase(name: str | Phase) -> Phase:
    """The phase named ``name`` (``deploy`` or ``full``)."""
    if isinstance(name, Phase):
        return name
    for phase in PHASES:
        if phase.name == str(name).strip().lower():
            return phase
    raise InputError(f"unknown phase {name!r}: use one of {', '.join(p.name for p in PHASES)}")
