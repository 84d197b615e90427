"""The Spark session a run uses: local, a standalone cluster, or Spark Connect."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING

from detector.errors import UsageError
from detector.spark import require_pyspark
from detector.warehouse import machine_memory

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[*]"

#: settings every session gets: UTC times (the events are UTC instants), Parquet times as
#: plain microseconds (INT96 is legacy, and DuckDB/polars read micros as they are), no UI
CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "zstd",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # a run's shuffles are small next to its parse; a few partitions per core
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    # Polars hands Arrow large strings: taken as they are, not copied to small ones
    "spark.sql.execution.arrow.useLargeVarTypes": "true",
    # no _SUCCESS and .crc files beside the dataset's: not data to any reader
    "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
    "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
}


def default_driver_memory() -> str:
    """Half the machine's memory, 2 to 16 GB: in local mode the driver's heap is every
    executor's, and a storm's one message delivered to a whole list is one task's sort
    (docs/scale.md: 2 GB ran out at 10M lines, 12 GB did not)."""
    return f"{max(2, min(16, machine_memory() // 2 >> 30))}g"


def spark_session(master: str = DEFAULT_MASTER, *,
                  conf: dict[str, str] | None = None) -> SparkSession:
    """A session on ``master``: ``local[N]``/``local[*]``, ``spark://host:port`` (a
    standalone cluster) or ``sc://host:port`` (Spark Connect, via
    ``SparkSession.builder.remote``). An existing session of this process is reused
    as it was made."""
    require_pyspark(connect=master.startswith("sc://"))
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:  # this process's session (a test session's): as it was made
        return active
    settings = {**CONF, "spark.driver.memory": default_driver_memory(), **(conf or {})}
    if master.startswith("sc://"):
        builder = SparkSession.builder.remote(master)
    else:
        if shutil.which("java") is None and not _java_home():
            raise UsageError("--engine spark needs Java 17 or later (e.g. apt-get install "
                             "openjdk-17-jre-headless), or --spark-master sc://host:port")
        builder = SparkSession.builder.master(master).appName("mailstorm")
        if master.startswith("local"):
            # the workers parse with this interpreter's polars and detector (a cluster's
            # executors need mailstorm installed in their own Python)
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    remote = master.startswith("sc://")
    for key, value in settings.items():
        if remote and not key.startswith("spark.sql."):
            continue  # the server's own settings, not a client's to change
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    if not master.startswith("sc://"):
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _java_home() -> bool:
    home = os.environ.get("JAVA_HOME")
    return bool(home) and os.path.exists(os.path.join(str(home), "bin", "java"))
