"""The lock (requirements/*.txt, made by scripts/lock) agrees with pyproject.toml, and everything
that installs Python packages installs from it alone.

A dependency added to, removed from or re-pinned in pyproject.toml without `scripts/lock` fails
here, offline, before anyone installs a version that CI never tested.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = canonicalize_name(PYPROJECT["project"]["name"])
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^ ;\\]+)")
_SOURCE = re.compile(r"^#\s+(?:via\s+)?(.+?)\s*$")


@dataclass
class Pin:
    version: Version
    hashes: int = 0
    sources: set[str] = field(default_factory=set)


def parse_lock(text: str) -> dict[str, Pin]:
    """name -> its pin, its number of hashes and what it is there for (uv's `# via` notes)."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if match := _PIN.match(raw):
            current = pins[canonicalize_name(match[1])] = Pin(Version(match[2]))
        elif current and line.startswith("--hash=sha256:"):
            current.hashes += 1
        elif current and raw.startswith("    #") and (source := _SOURCE.match(line)):
            current.sources.add(source[1])
    for pin in pins.values():
        pin.sources.discard("via")  # the head of a multi-line `# via` list
    return pins


def lock(name: str) -> dict[str, Pin]:
    return parse_lock((ROOT / "requirements" / f"{name}.txt").read_text())


def declared(*groups: str, runtime: bool = True) -> dict[str, Requirement]:
    """What pyproject.toml asks for directly: its dependencies and the named groups."""
    texts = list(PYPROJECT["project"]["dependencies"]) if runtime else []
    for group in groups:
        texts += PYPROJECT["dependency-groups"][group]
    return {canonicalize_name(r.name): r for r in map(Requirement, texts)}


def direct(pins: dict[str, Pin]) -> set[str]:
    """The pins the lock holds because pyproject.toml names them (not as a dependency's)."""
    ours = re.compile(rf"^{re.escape(PROJECT)} \(pyproject\.toml(:[a-z]+)?\)$")
    return {name for name, pin in pins.items() if any(map(ours.match, pin.sources))}


LOCKS = {
    "dev": declared("build", "test", "dev"),
    "runtime": declared("build"),
}


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_declared_dependency_is_pinned_within_its_range(name: str) -> None:
    pins = lock(name)
    outside = {
        dep: f"{req.specifier} but locked {pins[dep].version}"
        for dep, req in LOCKS[name].items()
        if dep in pins and not req.specifier.contains(pins[dep].version, prereleases=True)
    }
    assert set(LOCKS[name]) - set(pins) == set(), "declared but not locked: run scripts/lock"
    assert outside == {}, "pyproject.toml and the lock disagree: run scripts/lock"


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_the_lock_holds_nothing_pyproject_dropped(name: str) -> None:
    assert direct(lock(name)) == set(LOCKS[name]), "run scripts/lock"


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_every_pin_carries_its_hashes(name: str) -> None:
    assert [dep for dep, pin in lock(name).items() if pin.hashes == 0] == []


def test_the_runtime_lock_is_the_dev_lock_cut_down() -> None:
    dev, runtime = lock("dev"), lock("runtime")
    assert set(runtime) < set(dev)
    assert {dep: pin.version for dep, pin in runtime.items()} == {
        dep: dev[dep].version for dep in runtime
    }


def test_the_build_backend_is_locked() -> None:
    """The package is installed with --no-build-isolation: its backend must come from the lock."""
    (backend,) = map(Requirement, PYPROJECT["build-system"]["requires"])
    assert canonicalize_name(backend.name) in declared("build", runtime=False)
    assert backend.specifier.contains(lock("runtime")[canonicalize_name(backend.name)].version)


def test_the_parser_sees_a_drifted_pin() -> None:
    """The checks above would pass on a parser that reads nothing: show it reads a real change."""
    text = (ROOT / "requirements" / "runtime.txt").read_text()
    pins = parse_lock(text)
    assert pins["redis"].hashes >= 1
    assert f"{PROJECT} (pyproject.toml)" in pins["redis"].sources
    drifted = parse_lock(text.replace(f"redis=={pins['redis'].version}", "redis==4.0.0"))
    assert not declared()["redis"].specifier.contains(drifted["redis"].version)


_INSTALLERS = ["scripts/setup", "Dockerfile"]
_PIP_INSTALL = re.compile(r"pip install")


@pytest.mark.parametrize("path", _INSTALLERS)
def test_installs_come_from_the_lock_alone(path: str) -> None:
    """Every install reads a lock with --require-hashes, or installs the project itself, and
    none resolves anything at install time (--no-deps)."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / path).read_text())
    installs = [line.strip() for line in text.splitlines() if _PIP_INSTALL.search(line)]
    assert installs
    for line in installs:
        assert "--no-deps" in line, f"{path} resolves at install time: {line}"
        assert ("-r " in line) == ("--require-hashes" in line), f"{path}: {line}"


def test_every_other_script_installs_through_setup() -> None:
    """CI, the test command, serve, lock and the benchmarks' docs go through scripts/setup."""
    for path in [".ci/run", "scripts/test", "scripts/serve", "scripts/lock"]:
        text = (ROOT / path).read_text()
        assert not _PIP_INSTALL.search(text), path
        assert "scripts/setup" in text or "exec scripts/test" in text, path


def _setup_copy(tmp_path: Path) -> tuple[Path, Path]:
    """scripts/setup with the lock and pyproject.toml in a scratch tree whose venv python
    only writes down what it was asked to run."""
    for part in ("scripts/setup", "requirements/runtime.txt", "requirements/dev.txt"):
        (tmp_path / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / part, tmp_path / part)
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    calls = tmp_path / "calls.txt"
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    python.chmod(0o755)
    calls.write_text("")
    return tmp_path / "scripts" / "setup", calls


def _run(script: Path, *args: str) -> None:
    subprocess.run(["bash", str(script), *args], check=True, capture_output=True, timeout=60)


def test_setup_installs_from_the_lock_once_and_again_only_when_it_changes(
    tmp_path: Path,
) -> None:
    setup, calls = _setup_copy(tmp_path)
    _run(setup)
    first = calls.read_text().splitlines()
    assert [c.split(" -q ")[1] for c in first] == [
        "--require-hashes --no-deps -r requirements/runtime.txt",
        "--no-deps --no-build-isolation -e .",
    ]
    _run(setup)  # scripts/serve on every start: nothing changed, nothing installed
    assert calls.read_text().splitlines() == first
    lock = tmp_path / "requirements" / "runtime.txt"
    lock.write_text(lock.read_text() + "\n")
    _run(setup)
    assert len(calls.read_text().splitlines()) == 4


def test_a_venv_made_for_the_tests_also_serves(tmp_path: Path) -> None:
    setup, calls = _setup_copy(tmp_path)
    installed = (tmp_path / "requirements" / "dev.txt").read_bytes()
    installed += (tmp_path / "pyproject.toml").read_bytes()
    digest = hashlib.sha256(installed).hexdigest()
    (tmp_path / ".venv" / ".installed-dev").write_text(digest + "\n")
    _run(setup)
    assert calls.read_text() == ""
