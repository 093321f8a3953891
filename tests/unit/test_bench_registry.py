"""benchmarks/run.py: the case registry, targets as ratios to their references, the README table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))
import run  # noqa: E402


def _case(name: str, **medians: tuple[float, int]) -> run.Case:
    cmds = []
    for label, (median, rss_kib) in medians.items():
        c = run.Cmd(label.replace("_", " "), ["true"])
        c.times, c.rss_kib = [median], [rss_kib]
        cmds.append(c)
    return run.Case(name, name, cmds, baseline=cmds[-1].label)


def test_every_issue_figure_has_a_registered_case_and_target() -> None:
    assert {"big", "medium", "small", "verify13", "chain", "chain100k", "cores", "help"} <= set(run.REGISTRY)
    assert {t.case for t in run.TARGETS} <= set(run.REGISTRY)
    assert any(t.case == "chain100k" and t.metric == "rss" for t in run.TARGETS)


def test_targets_are_ratios_to_a_peer_or_to_the_target_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "TARGETS", [
        run.Target("peer", "v", "mlspec verify (13", 1.0, base="in-toto-verify (10 steps)"),
        run.Target("seconds", "c", "mlspec verify (", 1.0, seconds=1.5),
        run.Target("memory", "c", "mlspec verify (long chain), +4", 1.1, base="mlspec verify (long chain)", metric="rss"),
        run.Target("absent", "nope", "x", 1.0, seconds=1.0),
    ])
    cases = {"v": _case("v", **{"mlspec verify (13 stages)": (0.3, 1), "in-toto-verify (10 steps)": (0.2, 1)}),
             "c": _case("c", **{"mlspec verify (long chain), +4 KiB payloads": (3.0, 2048 * 1024),
                               "mlspec verify (long chain)": (1.2, 1024 * 1024)})}
    rows = {r[0]: r for r in run.targets(cases, quick=False)}
    assert rows["peer"][3:] == ("1.50x", False)
    assert rows["seconds"][3:] == ("2.00x", False)  # the first matching command: the +4 KiB one, 3.0 s
    assert rows["memory"][1:] == ("2048.000 MiB", "mlspec verify (long chain) 1024.000 MiB", "2.00x", False)
    assert rows["absent"][1:] == ("n/a", "1 s", "n/a", None)


def test_update_readme_replaces_only_the_marked_block(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{run.README_BEGIN}\n| old |\n{run.README_END}\nafter\n")
    run.update_readme("mlspec benchmarks: ...\n\n| a |\n\nTargets (issue #19), measured on M:\n\n| t |\n", readme)
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n") and text.endswith("after\n")
    assert "| old |" not in text and "Targets (issue #19), measured on M:" in text and "| a |" not in text
    readme.write_text("no markers\n")
    with pytest.raises(SystemExit):
        run.update_readme("Targets (issue #19)\n", readme)
    assert readme.read_text() == "no markers\n"  # nothing half-written


def test_unknown_case_names_are_refused(tmp_path: Path) -> None:
    args = argparse.Namespace(only="chain,nosuchcase", quick=True, size=None, reuse=None, long_runs=1)
    with pytest.raises(SystemExit, match="nosuchcase"):
        run.build_cases(tmp_path, args, None)


def test_markdown_cells_escape_pipes() -> None:
    assert run.md("find|xargs openssl") == "find\\|xargs openssl"


def test_make_chain_bundles_pass_the_gate(tmp_path: Path) -> None:
    """The benchmark times the gate on a chain it passes: a chain the gate refuses would time an early exit."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import make_chain

    from mlspec_attest.verify import verify_bundle

    make_chain.build(13, tmp_path / "c13")
    report = verify_bundle(tmp_path / "c13" / "bundle", tmp_path / "c13" / "policy.yaml")
    assert report.passed, [f.code for f in report.findings if f.severity == "error"]
