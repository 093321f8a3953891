"""``python -m mlspec_attest.demo [DIR] [--fail-objective]``: the same as ``mlspec demo``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlspec_attest.demo.runner import run_demo
from mlspec_attest.errors import MlspecError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the attested credit-approval pipeline and the deploy gate.")
    parser.add_argument("directory", nargs="?", default="demo-project")
    parser.add_argument("--fail-objective", action="store_true", help="train a deliberately weak model")
    args = parser.parse_args(argv)
    try:
        return run_demo(Path(args.directory), fail_objective=args.fail_objective)
    except MlspecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
