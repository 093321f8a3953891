#!/usr/bin/env python3
"""Run the attested credit-approval pipeline and the deploy gate (same as `mlspec demo`).

    python examples/pipeline/credit_pipeline.py [DIR] [--fail-objective]

The pipeline itself lives in the installed package, mlspec_attest/examples/credit.py,
so that `mlspec demo` works from any install; read it for how a pipeline uses the
Python API:

    attestor = Attestor(project / "bundle", load_signer("keys/pipeline.key"), base_dir=project)
    with attestor.stage("train") as s:
        s.material("data/splits/train.csv", role="train-data")
        s.product("models/model.pkl", role="model")
        s.metadata(framework={"name": "scikit-learn"}, hyperparameters={"C": 0.1})

Needs the demo extra: pip install 'mlspec-attest[demo]'.
"""

from __future__ import annotations

import sys

from mlspec_attest.demo.credit import main

if __name__ == "__main__":
    sys.exit(main())
