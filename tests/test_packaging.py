"""The wheel is the product: built into a temporary folder, it holds the code, the built-in
rules and templates, the licence, and the one version; pyproject, LICENSE, CHANGELOG and
`mailstorm --version` agree. (.ci/run installs it outside the checkout and runs it.)"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.version import Version

import detector
from detector.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--quiet",
                    "-w", str(out)], check=True, timeout=120, cwd=out)
    (built,) = out.glob("mailstorm-*.whl")
    return zipfile.ZipFile(built)


def metadata(wheel: zipfile.ZipFile) -> dict[str, list[str]]:
    (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    message = Parser().parsestr(wheel.read(name).decode(), headersonly=True)
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return fields


def test_wheel_holds_the_builtin_rules_and_templates(wheel: zipfile.ZipFile) -> None:
    for source, inside in [(ROOT / "rules", "detector/_builtin/rules"),
                           (ROOT / "reports" / "templates", "detector/_builtin/templates")]:
        files = sorted(p for p in source.rglob("*") if p.is_file())
        assert files, source
        for path in files:
            name = f"{inside}/{path.relative_to(source).as_posix()}"
            assert wheel.read(name) == path.read_bytes(), name


def test_wheel_holds_the_package_and_nothing_of_the_repository(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    package = {p.relative_to(ROOT).as_posix() for p in (ROOT / "detector").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts}
    assert package <= names, sorted(package - names)
    assert "detector/model/sql/model.sql" in names
    strays = [n for n in names if not n.startswith(("detector/", "mailstorm-"))]
    assert strays == []  # no tests/, bench/, sample_logs/ or docs/ in the product


def test_wheel_metadata_version_license_and_extras(wheel: zipfile.ZipFile) -> None:
    meta = metadata(wheel)
    assert meta["Version"] == [detector.__version__]
    assert Path(wheel.filename or "").name.startswith(f"mailstorm-{detector.__version__}-")
    assert meta["License-Expression"] == [PROJECT["license"]]
    assert meta["License-File"] == ["LICENSE"]
    (licence,) = [n for n in wheel.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
    assert wheel.read(licence) == (ROOT / "LICENSE").read_bytes()
    assert "zstd" in meta["Provides-Extra"]
    assert any(r.startswith("zstandard") and "extra == 'zstd'" in r
               for r in meta["Requires-Dist"])
    script = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "mailstorm = detector.cli:main" in wheel.read(script[0]).decode()


def test_license_file_is_the_declared_license() -> None:
    assert PROJECT["license"] == "Apache-2.0"
    head = (ROOT / "LICENSE").read_text().split()[:4]
    assert head == ["Apache", "License", "Version", "2.0,"]


def test_one_source_for_the_version() -> None:
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    source = PYPROJECT["tool"]["hatch"]["version"]["path"]
    assert source == "detector/__init__.py"
    written = [p for p in (ROOT / "detector").rglob("*.py")
               if re.search(r"^__version__\s*=", p.read_text(), re.M)]
    assert written == [ROOT / source]
    tree = ast.parse((ROOT / source).read_text())
    (literal,) = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
                  and isinstance(n.value, ast.Constant) and getattr(n.targets[0], "id", "")
                  == "__version__"]
    assert literal == detector.__version__
    Version(literal)  # a valid PEP 440 version


def test_mailstorm_version_prints_it() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"mailstorm, version {detector.__version__}\n"


def test_changelog_newest_release_is_the_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in text and "semver.org" in text
    headings = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.M)
    releases = [(v, d) for v, d in headings if v != "Unreleased"]
    assert releases and releases[0][0] == detector.__version__ and releases[0][1]
    assert headings[0][0] in ("Unreleased", detector.__version__)


def test_zstd_extra_is_what_sources_imports() -> None:
    assert "import zstandard" in (ROOT / "detector" / "sources.py").read_text()
    assert [Requirement(r).name for r in PROJECT["optional-dependencies"]["zstd"]] == [
        "zstandard"]


def test_installed_versions_meet_the_claimed_lower_bounds() -> None:
    """What the suite runs with satisfies what pyproject claims (the bounds are the tested
    minors: raise them when the environment moves on)."""
    for spec in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["zstd"]:
        req = Requirement(spec)
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(installed), f"{req.name} {installed} does not meet {req}"
