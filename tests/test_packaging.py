"""The wheel is the product: built into a temporary folder, it holds the code, the built-in
rules and templates, the licence, and the one version; pyproject, LICENSE, CHANGELOG and
`mailstorm --version` agree. (.ci/run installs it outside the checkout and runs it.) The
package's import graph, read from its source, keeps the tools that run the pipeline on
simulated days (bench/) out of the product, and the simulator apart from the detector."""

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
    # the quality sweep and the sample-log writer live in bench/, under any name
    moved = [n for n in names if n.endswith(".py")
             and Path(n).stem in {"quality", "quality_matrix", "samples", "sample_logs"}]
    assert moved == []


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


# ---- the import graph, read from the source -----------------------------------------------
#: what the simulator (behind `mailstorm simulate`) must not import, directly or through
#: other modules of the package: it writes logs; the detector reads them
DETECTOR = ("detector.pipeline", "detector.ingest", "detector.incidents", "detector.warehouse",
            "detector.reports")
#: the tools that left the package for bench/ and the test suite: the product never needs them
OUTSIDE = ("bench", "tests", "detector.simulate.quality", "detector.simulate.samples")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the text of ``module``) may import, anywhere in the file
    (functions, ``if TYPE_CHECKING`` blocks included): ``import a.b``, ``from a import b``
    (both ``a`` and ``a.b``: b may be a module), relative imports resolved, and
    ``importlib.import_module``/``__import__`` of a literal name."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) in ("import_module", "__import__"))):
            names.add(node.args[0].value)
    return {n for n in names if n}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def package_imports() -> dict[str, set[str]]:
    """Module of the package -> the names its source imports."""
    graph = {}
    for path in sorted((ROOT / "detector").rglob("*.py")):
        module = _module_name(path)
        graph[module] = imported_names(path.read_text(encoding="utf-8"), module,
                                       is_package=path.name == "__init__.py")
    return graph


def reached_from(module: str, graph: dict[str, set[str]]) -> dict[str, str]:
    """Every module of the package that importing ``module`` may import, with the module
    that imports it (importing a.b.c runs a and a.b first)."""
    seen = {module: ""}
    todo = [module]
    while todo:
        current = todo.pop()
        parents = [".".join(current.split(".")[:i]) for i in range(1, current.count(".") + 1)]
        for name in [*graph.get(current, ()), *parents]:
            if name in graph and name not in seen:
                seen[name] = current
                todo.append(name)
    return seen


def test_the_import_walk_sees_every_form_of_import() -> None:
    """The oracle of the tests below, on sources that import the pipeline every way."""
    forms = {
        "import detector.pipeline": "detector.pipeline",
        "from detector import pipeline": "detector.pipeline",
        "from detector.pipeline import run": "detector.pipeline",
        "from .. import pipeline": "detector.pipeline",
        "from ..incidents.store import x": "detector.incidents.store",
        "def f():\n    from bench.quality_matrix import score": "bench.quality_matrix",
        "import importlib\nimportlib.import_module('detector.warehouse')": "detector.warehouse",
        "__import__('tests.logsynth')": "tests.logsynth",
    }
    for source, name in forms.items():
        assert name in imported_names(source, "detector.simulate.day"), source
    assert "detector.simulate.scenario" in imported_names(
        "from . import scenario", "detector.simulate", is_package=True)


def test_the_moved_tools_are_not_in_the_package() -> None:
    gone = [ROOT / "detector" / "simulate" / name for name in ("quality.py", "samples.py")]
    assert [p for p in gone if p.exists()] == []
    assert (ROOT / "bench" / "quality_matrix.py").is_file()
    assert (ROOT / "bench" / "sample_logs.py").is_file()


def test_nothing_in_the_package_imports_bench_tests_or_the_moved_tools() -> None:
    graph = package_imports()
    assert "detector.cli" in graph and "detector.simulate.day" in graph
    bad = sorted((module, name) for module, names in graph.items() for name in names
                 if _within(name, OUTSIDE))
    assert bad == []


def test_the_simulator_never_imports_the_detector() -> None:
    """No module under detector/simulate imports the pipeline, ingest, incidents, warehouse
    or reports: not in its own source, nor through any package module it imports."""
    graph = package_imports()
    simulator = [m for m in graph if _within(m, ("detector.simulate",))]
    assert len(simulator) > 10
    direct = sorted((m, n) for m in simulator for n in graph[m] if _within(n, DETECTOR))
    assert direct == []
    for module in simulator:
        reached = reached_from(module, graph)
        chains = []
        for bad in (m for m in reached if _within(m, DETECTOR)):
            chain = [bad]
            while reached[chain[-1]]:
                chain.append(reached[chain[-1]])
            chains.append(" <- ".join(chain))
        assert chains == [], module
