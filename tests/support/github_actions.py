"""A GitHub Actions ``run:`` step of the shipped workflows, run here as GitHub would."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def expressions(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``${{ expression }}`` replaced by its value in ``values``, as
    GitHub Actions does before the step runs; an expression without a value is a KeyError,
    so a new one in the workflow cannot go untested."""
    return _EXPRESSION.sub(lambda m: values[m.group(1)], text)


def run_step(
    step: Mapping[str, Any],
    values: Mapping[str, str],
    workdir: Path,
    script: Path,
    env: Mapping[str, str],
    *extra: str,
) -> subprocess.CompletedProcess[str]:
    """``step``'s ``run`` (written to ``script``) with its ``env`` (expressions filled from
    ``values``) and ``env``, as GitHub runs it on Linux (``shell: bash``) from the
    checkout's root, ``workdir``. ``extra`` words go at the end of the command."""
    script.write_text(expressions(step["run"], values) + "".join(f" {w}" for w in extra))
    declared = step.get("env", {})
    step_env = {name: expressions(str(value), values) for name, value in declared.items()}
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=workdir, env={"PATH": os.environ["PATH"], **step_env, **env},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
