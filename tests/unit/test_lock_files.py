"""requirements.lock (the image) and requirements-dev.lock (`make`'s .venv) agree with pyproject.toml:
every pinned dependency is locked at its pin under the same marker, and both installs use the locks.
After changing a pin in pyproject.toml, `make lock` writes both files again."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
RUNTIME_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
# what each lock is compiled from (the Makefile's `lock` target)
LOCKED_EXTRAS = {RUNTIME_LOCK: (), DEV_LOCK: ("dev", "embedded")}

_CPYTHON = {"implementation_name": "cpython", "platform_python_implementation": "CPython"}
# the platform the tests and the image run on first, then a few others a marker might tell apart
ENVIRONMENTS = [
    {**_CPYTHON, "python_version": "3.11", "python_full_version": "3.11.14", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"},
    {**_CPYTHON, "python_version": "3.11", "python_full_version": "3.11.14", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64", "os_name": "posix"},
    {**_CPYTHON, "python_version": "3.12", "python_full_version": "3.12.8", "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"},
    {**_CPYTHON, "python_version": "3.11", "python_full_version": "3.11.14", "sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64", "os_name": "posix"},
    {**_CPYTHON, "python_version": "3.11", "python_full_version": "3.11.14", "sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64", "os_name": "nt"},
]


def locked(path: Path) -> list[tuple[Requirement, list[str]]]:
    """Each entry of a lock file with its hashes."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        hashes = re.findall(r"--hash=(\S+)", line)
        entries.append((Requirement(re.sub(r"--hash=\S+", "", line).strip()), hashes))
    return entries


def pinned(extras: tuple[str, ...]) -> list[Requirement]:
    lines = PROJECT["dependencies"] + [line for extra in extras for line in PROJECT["optional-dependencies"][extra]]
    return [Requirement(line) for line in lines]


def applies(requirement: Requirement, environment: dict) -> bool:
    return requirement.marker is None or requirement.marker.evaluate(environment)


def version(requirement: Requirement) -> str:
    (spec,) = requirement.specifier
    assert spec.operator == "==", f"{requirement}: pinned with {spec.operator}, not =="
    return spec.version


@pytest.mark.parametrize("lock", list(LOCKED_EXTRAS), ids=lambda path: path.name)
def test_every_entry_is_pinned_and_hashed(lock):
    entries = locked(lock)
    assert entries, f"{lock.name} is empty"
    for requirement, hashes in entries:
        version(requirement)
        assert hashes, f"{lock.name}: {requirement} has no hash (pip installs the lock with --require-hashes)"


@pytest.mark.parametrize("lock", list(LOCKED_EXTRAS), ids=lambda path: path.name)
def test_every_pin_of_pyproject_is_locked_at_its_version_under_its_marker(lock):
    entries = [requirement for requirement, _ in locked(lock)]
    for pin in pinned(LOCKED_EXTRAS[lock]):
        name = canonicalize_name(pin.name)
        for environment in ENVIRONMENTS:
            installed = [entry for entry in entries if canonicalize_name(entry.name) == name and applies(entry, environment)]
            where = f"{environment['sys_platform']} {environment['platform_machine']} Python {environment['python_version']}"
            if applies(pin, environment):
                assert [version(entry) for entry in installed] == [version(pin)], (
                    f"pyproject.toml pins {pin}, {lock.name} installs {[str(entry) for entry in installed]} on {where}: run `make lock`")
            else:
                assert not installed, f"{lock.name} installs {pin.name} on {where}, where pyproject.toml's marker leaves it out: run `make lock`"


def test_the_image_gets_the_versions_the_tests_ran_with():
    """Every package of the runtime lock is in the development lock at the same version."""
    dev = {(canonicalize_name(entry.name), str(entry.marker)): version(entry) for entry, _ in locked(DEV_LOCK)}
    for entry, _ in locked(RUNTIME_LOCK):
        assert dev.get((canonicalize_name(entry.name), str(entry.marker))) == version(entry), (
            f"{entry} of requirements.lock is not in requirements-dev.lock at that version: run `make lock`")


def test_make_and_the_image_install_from_the_locks():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    stamp = re.search(r"^\$\(STAMP\):(.*)\n((?:\t.*\n)+)", makefile, re.M)
    assert stamp and "requirements-dev.lock" in stamp.group(1).split() and "pyproject.toml" in stamp.group(1).split()
    assert "--require-hashes -r requirements-dev.lock" in stamp.group(2) and "--no-deps -e ." in stamp.group(2)
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^RUN .*pip install --require-hashes -r requirements\.lock$", dockerfile, re.M)
    assert re.search(r"^RUN .*pip install --no-deps \.$", dockerfile, re.M)
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
