"""Shared fixtures: the real-log corpus beside the repository, small parse helpers, and
one headless Chromium for the whole test session."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

# One thread each for DuckDB and Polars in a test process (unless set): the parallel run
# (make test) already keeps both cores busy with its worker processes, and their inputs
# are small, where a second engine thread costs more CPU than it saves (bench/README.md).
# Tests of threading set their own counts. The package, imported before Polars, passes
# the count on to Polars' pool (detector/__init__.py).
os.environ.setdefault("MAILSTORM_THREADS", "1")

import detector  # noqa: E402, F401, I001  (before Polars: see above)
import polars as pl  # noqa: E402
import pytest  # noqa: E402

from detector.formats import ParseContext, postfix
from detector.formats.syslog import YearState

# /work/main (or a CI clone) has a ``shared/`` folder beside it holding the corpus.
CORPUS_DIR = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _unavailable(variable: str) -> Callable[[str], None]:
    """What a test does when something it needs is missing: skip, saying why, or fail
    where the environment variable ``variable`` is ``required`` (CI)."""
    required = os.environ.get(variable) == "required"

    def missing(why: str) -> None:
        (pytest.fail if required else pytest.skip)(why)

    return missing


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, driven by Playwright: one browser for the whole session.

    Skips, saying what is missing, where Playwright's Python package or Chromium is
    absent; with ``MAILSTORM_BROWSER=required`` (CI, ``make browser``) that is a failure.
    ``MAILSTORM_CHROMIUM`` names another Chromium binary.
    """
    missing = _unavailable("MAILSTORM_BROWSER")

    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("browser tests need Playwright's Python package: pip install -e '.[dev]'")
    exe = (os.environ.get("MAILSTORM_CHROMIUM") or shutil.which("chromium")
           or shutil.which("chromium-browser"))
    if not exe:
        missing("browser tests need Chromium: `make chromium` (apt-get install chromium) "
                "or MAILSTORM_CHROMIUM=/path/to/chromium")
    with sync_playwright() as driver:
        # Playwright never downloads a browser of its own here: it drives the system's.
        browser = driver.chromium.launch(executable_path=exe, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared corpus of real mail-server logs (skips the test when it is absent)."""
    if not CORPUS_DIR.is_dir():
        pytest.skip("shared corpus not present")
    return CORPUS_DIR


def lines_frame(lines: Sequence[str | None], first_line_no: int = 1) -> pl.DataFrame:
    """A batch as ``sources.iter_batches`` yields it: columns raw and line_no."""
    return pl.DataFrame(
        {"raw": list(lines), "line_no": range(first_line_no, first_line_no + len(lines))},
        schema={"raw": pl.String, "line_no": pl.Int64},
    )


def parse_postfix(
    lines: Sequence[str | None], *, year: int = 2024, tz: str = "UTC",
    ctx: ParseContext | None = None,
) -> pl.DataFrame:
    """Parse lines as one batch with the Postfix parser; rows in line order."""
    ctx = ctx or ParseContext(source_file="test.log", tz=tz, years=YearState(year))
    return postfix.parse(lines_frame(lines), ctx).sort("line_no")


#: the modules that take longest, run first: ``make test``'s two processes take whole
#: modules in this order (--dist loadfile), and one started last would run alone at the end
LONGEST_FIRST = ("test_spark_engine.py", "test_dialect.py", "test_quality.py",
                 "test_model_incremental.py", "test_hostile_warehouse.py")
#: the modules that start Spark: one process takes them all, so one JVM starts (and warms)
SPARK_MODULES = ("test_spark_engine.py", "test_dialect.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """--dist loadfile, with the Spark modules one unit of work and the units handed out
    in the order above (xdist would otherwise start with the modules of most tests)."""
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return "spark" if Path(scope).name in SPARK_MODULES else scope

    config.option.loadscopereorder = False
    return Scheduling(config, log)


@pytest.fixture(scope="session")
def spark_session() -> Iterator[Any]:
    """One local Spark session (``local[2]``) for the whole test session.

    Skips, saying what is missing, where PySpark (with pandas, which its mapInArrow
    needs) or Java is absent; with ``MAILSTORM_SPARK=required`` (CI) that is a failure.
    """
    missing = _unavailable("MAILSTORM_SPARK")

    try:
        import pandas  # noqa: F401
        import pyspark  # noqa: F401
    except ImportError:
        missing("Spark tests need PySpark and pandas: pip install -e '.[dev,spark]'")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        missing("Spark tests need Java 17 or later: apt-get install openjdk-17-jre-headless")
    from pyspark.sql import SparkSession

    from detector.spark.session import spark_session as start

    other = SparkSession.getActiveSession()  # not this fixture's: made by another
    if other is not None and other.sparkContext.pythonExec != sys.executable:
        other.stop()  # its workers' Python lacks this one's packages: parse would fail
    # few shuffle partitions: the inputs are tiny, and each partition is a task. A JVM
    # this short-lived does better with the quick compiler alone and one GC thread: C2
    # and parallel GC spent half the CPU of a test run warming up (bench/README.md)
    spark = start("local[2]", conf={
        "spark.sql.shuffle.partitions": "2",
        "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC "
                                         "-XX:ReservedCodeCacheSize=240m"})
    try:
        yield spark
    finally:
        spark.stop()
