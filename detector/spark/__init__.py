"""The Spark engine (``mailstorm run --engine spark``): the same parsers, model and rules
on Apache Spark, for a day too large for one machine.

PySpark is an optional extra (``pip install 'mailstorm[spark]'``); nothing here imports
it at module load, so the rest of mailstorm runs without it. ``require_pyspark`` says in
one line what is missing.

Stages: ``parse`` (files to events, parsed by the Polars format modules inside
``mapInArrow``), ``engine`` (events and model tables written as the dataset, rules run as
Spark SQL, their hits handed to the DuckDB incident code). The engine is not incremental:
each run builds the dataset from the logs it is given.
"""

from __future__ import annotations

import importlib.util

from detector.errors import UsageError

INSTALL_HINT = "pip install 'mailstorm[spark]'"
#: what PySpark's Connect client imports beyond PySpark (its ``connect`` extra)
CONNECT_MODULES = ("grpc", "grpc_status", "google.rpc", "zstandard")


def require_pyspark(*, connect: bool = False) -> None:
    """Fail with one line (a usage error, not a traceback) when PySpark is missing, or
    (``connect``) the Spark Connect client's packages are."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise UsageError(f"--engine spark needs PySpark: {INSTALL_HINT}") from None
    for module in CONNECT_MODULES if connect else ():
        if importlib.util.find_spec(module) is None:
            raise UsageError(f"--spark-master sc://... needs the Spark Connect client "
                             f"({module} is missing): {INSTALL_HINT}")
