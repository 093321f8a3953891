"""``python -m mlspec_attest.cli``: the same as ``mlspec``."""

from mlspec_attest.cli.main import main

if __name__ == "__main__":  # pragma: no cover
    main()
