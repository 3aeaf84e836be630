"""The package's layers hold: import-linter's contracts of pyproject.toml pass.

lint-imports finds a package's modules by walking its directory, but producer/,
spark/ and templates/ live beside evilnet/ and are mapped into it by pyproject's
package-dir: in the checkout it would not see them. The check therefore runs over a
view of the package as installed (symlinks to the sources, so it reads the working
tree itself).
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = REPO_ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def installed_view(root: Path) -> Path:
    """``root/evilnet/…`` laid out as the wheel installs it, every file a symlink."""
    package_dirs = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    top = root / "evilnet"
    top.mkdir()
    for entry in (REPO_ROOT / package_dirs["evilnet"]).iterdir():
        if entry.name != "__pycache__":
            (top / entry.name).symlink_to(entry)
    for package, source in package_dirs.items():
        if package != "evilnet":
            (root / package.replace(".", "/")).symlink_to(REPO_ROOT / source)
    return root


def lint_imports(view: Path) -> subprocess.CompletedProcess:
    # lint-imports puts its working directory first on sys.path: the view's evilnet
    # is the one it imports and walks.
    return subprocess.run([str(LINT_IMPORTS), "--config", str(PYPROJECT), "--no-cache"],
                          cwd=view, capture_output=True, text=True, timeout=120, check=False)


def test_the_import_contracts_are_kept(tmp_path: Path) -> None:
    result = lint_imports(installed_view(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


def test_a_cycle_through_a_mapped_package_breaks_a_contract(tmp_path: Path) -> None:
    # The view must show the mapped packages: a config model that imported the
    # planner back (a cycle planner -> producer.config -> planner) is caught.
    view = installed_view(tmp_path)
    config = view / "evilnet" / "producer" / "config.py"
    producer = view / "evilnet" / "producer"
    producer.unlink()
    producer.mkdir()
    for entry in (REPO_ROOT / "producer").iterdir():
        if entry.name not in ("config.py", "__pycache__"):
            (producer / entry.name).symlink_to(entry)
    config.write_text((REPO_ROOT / "producer" / "config.py").read_text()
                      + "\nfrom evilnet.planner import PlanError  # noqa: E402\n")
    result = lint_imports(view)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Command lines > platform > domain BROKEN" in result.stdout
    assert "evilnet.producer.config -> evilnet.planner" in result.stdout
