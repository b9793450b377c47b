#!/usr/bin/env python
"""Drain a topic with the seed's three jobs in one Spark application
(local[2]: this machine's two cores), as `spark-submit` runs them, then
print `DRAINED <unix seconds>` and the rows each job wrote.

    python drain.py BROKERS TOPIC OUT_DIR
"""
import sys
import time

from pyspark.sql import SparkSession

import jobs

KAFKA_PACKAGE = "org.apache.spark:spark-sql-kafka-0-10_2.13:4.2.0"


def main():
    brokers, topic, out = sys.argv[1:4]
    spark = (
        SparkSession.builder.appName("ExtractEventsJob")
        .master("local[2]")
        .config("spark.jars.packages", KAFKA_PACKAGE)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    queries = [jobs.start(spark, table, brokers, topic, out) for table in jobs.SCHEMAS]
    for q in queries:
        q.awaitTermination()
    print(f"DRAINED {time.time():.3f}", flush=True)
    for table in jobs.SCHEMAS:
        n = spark.read.parquet(f"{out}/{table}").count()
        print(f"ROWS {table} {n}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
