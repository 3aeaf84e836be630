"""What a backlog's micro-batches cost the stream job's single-query layouts, ``one`` and
``panes``, in Spark local mode in one session: the ratio panes / one.

    SPARK_PYTHON benchmarks/panes_batch_cost.py [--posts 50000] [--cities 1130]
        [--city-zipf 1.0] [--minutes 10] [--batches 5] [--master local[1]] [--rounds 1]
        [--out FILE]

SPARK_PYTHON is a Python with pyspark (the local stack's Spark master venv,
``.run/hosts/spark-master/venv/bin/python``, or any venv with pyspark and the
project's runtime packages); evilnet is imported from this checkout. Run it under
``nice`` on a shared machine: it is a benchmark, not a test, and asserts nothing.

The backlog: about ``--posts`` PostRecord values of the catalog's ``--cities`` most
populous cities (5 topics each), the k-th city posting 1/k^S as often as the first
(``--city-zipf`` S; at least 8 posts a city), each city's posts made by the
producer's generator and router (its users, topics, retweets; unique ids), their
``created_at`` spread at random over ``--minutes`` minutes of event time, sorted by
it and cut into ``--batches`` consecutive micro-batches (as a backlog read with a
bound per trigger). Both layouts read the same files (text source, one file per
micro-batch, trigger availableNow) with the job's own parsing, deduplication,
aggregation and ``foreachBatch`` writer (``single_query``), into the in-memory
stand-in of Cassandra of tests/analytics/spark_local_driver.py: the store methods
run, the CQL does not. So the figures leave out Cassandra's own time, which is not
the same for both: ``panes`` also writes its panes and reads the stored ones back
(``statements`` in the output counts each layout's statements). ``--cassandra
HOST[:PORT]`` writes into a real (throwaway!) Cassandra instead, a keyspace per
layout, and compares the two keyspaces' output tables at the end.

A warm-up round on 1/20 of the backlog runs first for each layout (code
generation, first loads); then ``--rounds`` rounds, alternating which layout goes
first. Per layout: the micro-batches' ``triggerExecution`` (sum, and the slowest),
of which the ``foreachBatch`` writer's time (which runs the aggregation: ``collect``),
of which the store's window and hour writes (``write_windows``, ``write_hours``: the
same rows for both layouts), and the rows written. The ratio is printed with and
without those common writes.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
TOPICS = ["hockey", "food", "traffic", "weather", "music"]


def load_driver():
    """tests/analytics/spark_local_driver.py: the checkout's imports, the in-memory store."""
    import importlib.util

    path = REPO_ROOT / "tests" / "analytics" / "spark_local_driver.py"
    spec = importlib.util.spec_from_file_location("spark_local_driver", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.use_checkout(REPO_ROOT)
    return module


def backlog(posts: int, cities: int, zipf: float, minutes: int, seed: int = 7) -> list[tuple]:
    """(created_at, PostRecord JSON) of the backlog, sorted by created_at."""
    from evilnet.cities import load_catalog
    from evilnet.producer.generator import SYNTH_START, synthesize, synthetic_rules
    from evilnet.producer.routing import Line, Router

    names = [city.name for city in load_catalog().cities][:cities]
    if len(names) < cities:
        raise SystemExit(f"the catalog has {len(names)} cities, not {cities}")
    weights = [1 / rank**zipf for rank in range(1, len(names) + 1)]
    total = sum(weights)
    chance, router, out = random.Random(seed), Router(256 * 1024), []
    for index, (city, weight) in enumerate(zip(names, weights, strict=True)):
        count = max(8, round(posts * weight / total))
        for post in synthesize(synthetic_rules([city], TOPICS), posts=count,
                               seed=seed + index * 1024):
            text = json.dumps(post, ensure_ascii=False).encode()
            for record in router.route(Line(text, len(text))).records:
                moment = SYNTH_START + timedelta(seconds=chance.uniform(0, minutes * 60))
                out.append((moment, record.model_copy(update={"created_at": moment})
                            .model_dump_json()))
    out.sort(key=lambda pair: pair[0])
    return out


def cassandra_store(session, keyspace: str):
    """A CassandraStore on a fresh ``keyspace`` (schema applied), counting its statements."""
    from evilnet.schema import apply_schema
    from evilnet.spark.store import CassandraStore

    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    apply_schema(session, keyspace)
    store = CassandraStore(session, keyspace)
    store.statements = {}
    run_statements = store._run

    def counted(name, parameters):
        store.statements[name] = store.statements.get(name, 0) + len(parameters)
        return run_statements(name, parameters)

    store._run = counted
    return store


def table_rows(session, keyspace: str) -> dict[str, list]:
    """Every row of the job's output tables (not the panes, not job_progress)."""
    from evilnet.schema import (
        CITIES,
        CITY_HOUR_WINDOWS,
        CITY_TOPIC_WINDOWS,
        CITY_TOPICS,
        CITY_WINDOWS,
        TOP_CITIES,
    )

    ignored = {"last_seen"}
    return {table: sorted(tuple(v for k, v in row._asdict().items() if k not in ignored)
                          for row in session.execute(f"SELECT * FROM {keyspace}.{table}"))
            for table in (CITY_WINDOWS, CITY_TOPIC_WINDOWS, CITIES, CITY_TOPICS,
                          CITY_HOUR_WINDOWS, TOP_CITIES)}


def run(spark, driver, layout: str, values: list[str], batches: int, work: Path,
        session=None) -> dict:
    from evilnet.spark import job

    shutil.rmtree(work, ignore_errors=True)
    inputs = work / "input"
    inputs.mkdir(parents=True)
    size = -(-len(values) // batches)
    for index in range(batches):
        (inputs / f"batch-{index:04d}.txt").write_text(
            "".join(v + "\n" for v in values[index * size:(index + 1) * size]), "utf-8")
    config = job.JobConfig(bootstrap_servers="unused", checkpoint_dir=str(work / "checkpoint"),
                           layout=layout)
    store = (driver.memory_store_class()() if session is None
             else cassandra_store(session, f"evilnet_bench_{layout}"))
    writes: list[dict] = []
    common = {"seconds": 0.0}  # in the store methods both layouts call with the same rows

    def timed(method):
        def call(*args, **kwargs):
            began = time.monotonic()
            try:
                return method(*args, **kwargs)
            finally:
                common["seconds"] += time.monotonic() - began
        return call

    store.write_windows, store.write_hours = timed(store.write_windows), timed(store.write_hours)

    def write_batch(batch, batch_id, write) -> None:
        began = time.monotonic()
        rows = write(batch)
        writes.append({"batch": batch_id, "seconds": time.monotonic() - began,
                       "rows": {k: len(v) for k, v in rows.items()}})

    records = spark.readStream.format("text").option("maxFilesPerTrigger", 1).load(str(inputs))
    frame, name, write = job.single_query(job.parse_posts(records, config), layout, store,
                                          config)
    began = time.monotonic()
    query = (frame.writeStream.queryName(f"{name}-{work.name}").outputMode("update")
             .foreachBatch(lambda batch, batch_id: write_batch(batch, batch_id, write))
             .option("checkpointLocation", str(work / "checkpoint" / name))
             .trigger(availableNow=True).start())
    query.awaitTermination()
    wall = time.monotonic() - began
    progress = [p for p in query.recentProgress if p["numInputRows"]]
    durations = [p["durationMs"]["triggerExecution"] / 1000 for p in progress]
    return {"layout": layout, "records": len(values), "batches": len(progress),
            "input_rows": sum(p["numInputRows"] for p in progress),
            "batch_seconds": round(sum(durations), 2),
            "slowest_batch_seconds": round(max(durations), 2),
            "writer_seconds": round(sum(w["seconds"] for w in writes), 2),
            "window_and_hour_writes_seconds": round(common["seconds"], 2),
            "wall_seconds": round(wall, 2),
            "rows_written": {output: sum(w["rows"].get(output, 0) for w in writes)
                             for output in ("windows", "hours")},
            "statements": dict(store.statements)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=50_000)
    parser.add_argument("--cities", type=int, default=1130)
    parser.add_argument("--city-zipf", type=float, default=1.0)
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--batches", type=int, default=5)
    parser.add_argument("--master", default="local[1]")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--cassandra", metavar="HOST[:PORT]",
                        help="write into a real (throwaway) Cassandra, keyspaces "
                             "evilnet_bench_one and evilnet_bench_panes (dropped and made "
                             "again), instead of the in-memory stand-in; at the end, both "
                             "keyspaces' output tables are compared")
    args = parser.parse_args(argv)

    driver = load_driver()
    from pyspark.sql import SparkSession

    began = time.monotonic()
    values = [value for _, value in backlog(args.posts, args.cities, args.city_zipf,
                                            args.minutes)]
    print(f"backlog: {len(values)} records over {args.cities} cities x {len(TOPICS)} topics, "
          f"{args.minutes} min of event time, {args.batches} batches "
          f"(made in {time.monotonic() - began:.1f} s)", flush=True)
    spark = (SparkSession.builder.master(args.master).appName("evilnet-panes-batch-cost")
             .config("spark.sql.shuffle.partitions", 2)
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.streaming.noDataMicroBatches.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    root = Path(tempfile.mkdtemp(prefix="evilnet-panes-bench-"))
    results: list[dict] = []
    cluster = session = None
    if args.cassandra:
        from evilnet.spark.store import connect

        host, _, port = args.cassandra.partition(":")
        cluster, session = connect([host], int(port or 9042))
    equal = None
    try:
        for layout in ("one", "panes"):  # warm-up
            warm = run(spark, driver, layout, values[: max(1, len(values) // 20)], 1,
                       root / f"warm-{layout}")
            print(f"warm-up {layout}: {warm['batch_seconds']} s", flush=True)
        for round_ in range(args.rounds):
            order = ("one", "panes") if round_ % 2 == 0 else ("panes", "one")
            for layout in order:
                result = run(spark, driver, layout, values, args.batches,
                             root / f"{layout}-{round_}", session)
                result["round"] = round_
                results.append(result)
                print(json.dumps(result), flush=True)
        if session is not None:
            one, panes = (table_rows(session, f"evilnet_bench_{lay}") for lay in ("one", "panes"))
            equal = {table: one[table] == panes[table] for table in one}
            print(f"output tables equal in Cassandra: {equal}", flush=True)
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)
        if cluster is not None:
            cluster.shutdown()
    total = {layout: sum(r["batch_seconds"] for r in results if r["layout"] == layout)
             for layout in ("one", "panes")}
    # Without the writes both make alike (write_windows, write_hours: the same rows).
    own = {layout: total[layout] - sum(r["window_and_hour_writes_seconds"] for r in results
                                       if r["layout"] == layout)
           for layout in ("one", "panes")}
    summary = {"records": len(values), "cities": args.cities, "city_zipf": args.city_zipf,
               "minutes": args.minutes, "batches": args.batches, "master": args.master,
               "rounds": args.rounds, "store": "cassandra" if args.cassandra else "memory",
               "tables_equal": equal, "batch_seconds": total,
               "ratio_panes_to_one": round(total["panes"] / total["one"], 3),
               "seconds_without_common_writes": own,
               "ratio_without_common_writes": round(own["panes"] / own["one"], 3),
               "results": results}
    print(f"batch time: one {total['one']:.1f} s, panes {total['panes']:.1f} s, "
          f"ratio panes/one {summary['ratio_panes_to_one']}; without the window and hour "
          f"writes both make: one {own['one']:.1f} s, panes {own['panes']:.1f} s, ratio "
          f"{summary['ratio_without_common_writes']}")
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
