"""A real SoftHSM2 token in a temporary directory, for tests and the documented demo command.

``SoftHSM.create(dir)`` writes a softhsm2.conf there, initialises a token with
softhsm2-util and returns the URIs of keys made ON the token by mlspec itself.
Absent softhsm2 (not installed) is the only reason to skip; CI installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MODULE_CANDIDATES = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                     "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so", "/usr/local/lib/softhsm/libsofthsm2.so")
PIN = "4711-test-pin"
SO_PIN = "so-0815-test"
LABEL = "mlspec-test"


def softhsm_missing() -> str | None:
    """Why SoftHSM2 cannot be used here, or None when it can."""
    if shutil.which("softhsm2-util") is None:
        return "softhsm2 is not installed (apt-get install softhsm2; .ci/run does it)"
    if module_path() is None:
        return f"softhsm2-util found but no libsofthsm2.so in {', '.join(MODULE_CANDIDATES)}"
    return None


def module_path() -> str | None:
    return next((m for m in MODULE_CANDIDATES if os.path.isfile(m)), None)


@dataclass
class SoftHSM:
    directory: Path
    conf: Path
    module: str
    label: str = LABEL
    pin: str = PIN

    @classmethod
    def create(cls, directory: Path, label: str = LABEL) -> SoftHSM:
        module = module_path()
        assert module is not None, softhsm_missing()
        tokens = directory / "tokens"
        tokens.mkdir(parents=True, exist_ok=True)
        conf = directory / "softhsm2.conf"
        conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n",
                        encoding="utf-8")
        env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
        subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", SO_PIN,
                        "--pin", PIN], check=True, env=env, capture_output=True)
        return cls(directory=directory, conf=conf, module=module, label=label)

    def uri(self, obj: str, *, pin: bool = False) -> str:
        """pkcs11:token=...;object=...?module-path=... (the PIN comes from the environment unless pin=True)."""
        query = f"module-path={self.module}" + (f"&pin-value={self.pin}" if pin else "")
        return f"pkcs11:token={self.label};object={obj}?{query}"

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf), "MLSPEC_PKCS11_PIN": self.pin, **extra}
