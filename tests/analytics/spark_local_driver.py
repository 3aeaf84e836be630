"""Runs the stream job's single-query path (spark/job.py) in Spark local mode, batch by batch,
on a text source instead of Kafka, into the tables of an in-memory Cassandra stand-in.

    SPARK_PYTHON spark_local_driver.py REPO LAYOUT STEPS.json WORK OUT.json

Run by tests/analytics/test_panes_local_spark.py (and benchmarks/panes_batch_cost.py)
in a Python that has pyspark ($EVILNET_SPARK_PYTHON). The evilnet package is imported
from the checkout REPO, whatever that Python has installed. Each step of STEPS is
``{"values": [...]}`` (Kafka record values of one micro-batch: a file of the text
source, put there once the previous batch is committed, read by the running query)
or ``{"replay": true}`` (the query stopped, the last batch's commit deleted, the query
started again: Spark runs that batch again from its offsets and the state before it,
as after a crash). The query's
aggregation and ``foreachBatch`` writer are the job's own (``single_query``), and so
is every store method above the statements: only executing CQL is emulated, per
partition as the tables key their rows (MemoryStore). OUT gets the tables and each
run's batches (ids, input rows, bad records, rows written, duration).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace


def use_checkout(root: Path) -> None:
    """Import evilnet, evilnet.spark and evilnet.producer from the checkout ``root``."""
    for name, path in (("evilnet", root / "evilnet"), ("evilnet.spark", root / "spark"),
                       ("evilnet.producer", root / "producer")):
        spec = importlib.util.spec_from_file_location(
            name, path / "__init__.py", submodule_search_locations=[str(path)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def memory_store_class():
    from evilnet.schema import day_of, hour_of
    from evilnet.spark.store import CassandraStore

    class MemoryStore(CassandraStore):
        """CassandraStore whose statements run on dicts keyed like the tables."""

        def __init__(self) -> None:
            super().__init__(session=None)
            self.windows: dict[tuple, tuple] = {}
            self.topic_windows: dict[tuple, tuple] = {}
            self.hours: dict[tuple, dict] = defaultdict(dict)  # (city, day) -> end -> row
            self.top: set[tuple] = set()
            self.cities: set[str] = set()
            self.city_topics: set[tuple] = set()
            self.panes: dict[tuple, dict] = defaultdict(dict)  # partition -> start -> row
            self.statements: dict[str, int] = defaultdict(int)

        def _run(self, name: str, parameters):
            self.statements[name] += len(parameters)
            return [getattr(self, "_" + name)(*p) for p in parameters]

        def _upsert_city_window(self, city, day, start, end, t, r, u, _ttl):
            assert day == day_of(start)
            self.windows[(city, start)] = (end, t, r, u)

        def _upsert_city_topic_window(self, city, topic, day, start, end, t, r, u, _ttl):
            assert day == day_of(start)
            self.topic_windows[(city, topic, start)] = (end, t, r, u)

        def _upsert_city(self, _bucket, city, _seen, _ttl):
            self.cities.add(city)

        def _upsert_city_topic(self, city, topic, _seen, _ttl):
            self.city_topics.add((city, topic))

        def _upsert_city_hour(self, city, day, end, start, t, r, u, _ttl):
            self.hours[(city, day)][end] = SimpleNamespace(
                city=city, window_start=start, window_end=end, tweets=t, retweets=r,
                unique_users=u)

        def _select_city_hours(self, city, day, low, high):
            return [row for end, row in sorted(self.hours[(city, day)].items())
                    if low <= end <= high]

        def _insert_top_city(self, metric, end, value, city, _ttl):
            self.top.add((metric, end, value, city))

        def _delete_top_city(self, metric, end, value, city):
            self.top.discard((metric, end, value, city))

        def _upsert_city_pane(self, city, hour, start, t, r, users, _ttl):
            assert hour == hour_of(start)
            self.panes[(city, None, hour)][start] = (t, r, users)

        def _upsert_city_topic_pane(self, city, topic, hour, start, t, r, users, _ttl):
            assert hour == hour_of(start)
            self.panes[(city, topic, hour)][start] = (t, r, users)

        def _select_city_panes(self, city, hour, low, high):
            return self._panes(city, None, hour, low, high)

        def _select_city_topic_panes(self, city, topic, hour, low, high):
            return self._panes(city, topic, hour, low, high)

        def _panes(self, city, topic, hour, low, high):
            return [SimpleNamespace(city=city, topic=topic, pane_start=start, tweets=t,
                                    retweets=r, users=users)
                    for start, (t, r, users) in sorted(self.panes[(city, topic, hour)].items())
                    if low <= start <= high]

        def tables(self) -> dict:
            iso = lambda moment: moment.isoformat()  # noqa: E731
            return {
                "windows": [[c, "", iso(s), iso(e), t, r, u]
                            for (c, s), (e, t, r, u) in sorted(self.windows.items())],
                "topic_windows": [[c, p, iso(s), iso(e), t, r, u] for (c, p, s), (e, t, r, u)
                                  in sorted(self.topic_windows.items())],
                "hours": [[row.city, "", iso(row.window_start), iso(row.window_end),
                           row.tweets, row.retweets, row.unique_users]
                          for part in self.hours.values() for row in part.values()],
                "top": sorted([m, iso(e), v, c] for m, e, v, c in self.top),
                "cities": sorted(self.cities),
                "city_topics": sorted(self.city_topics),
                "statements": dict(self.statements),
            }

    return MemoryStore


def main(repo: str, layout: str, steps_file: str, work: str, out: str) -> int:
    use_checkout(Path(repo))
    from pyspark.sql import SparkSession

    from evilnet.spark import job

    work_dir = Path(work)
    inputs, checkpoints = work_dir / "input", work_dir / "checkpoint"
    shutil.rmtree(work_dir, ignore_errors=True)
    inputs.mkdir(parents=True)
    config = job.JobConfig(bootstrap_servers="unused", checkpoint_dir=str(checkpoints),
                           layout=layout, shuffle_partitions=2)
    spark = (SparkSession.builder.master("local[1]").appName(f"evilnet-local-{layout}")
             .config("spark.sql.shuffle.partitions", config.shuffle_partitions)
             .config("spark.sql.session.timeZone", "UTC")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             # A batch per file: no batch of its own for the watermark.
             .config("spark.sql.streaming.noDataMicroBatches.enabled", "false")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    store = memory_store_class()()
    batches: list[dict] = []

    def write_batch(batch, batch_id, write) -> None:
        began = time.monotonic()
        rows = write(batch)
        batches.append({"batch": batch_id, "rows": {k: len(v) for k, v in (rows or {}).items()},
                        "write_seconds": time.monotonic() - began})

    def start():
        records = spark.readStream.format("text").load(str(inputs))
        frame, name, write = job.single_query(job.parse_posts(records, config), layout, store,
                                              config)
        return (frame.writeStream.queryName(name).outputMode("update")
                .foreachBatch(lambda batch, batch_id: write_batch(batch, batch_id, write))
                .option("checkpointLocation", str(checkpoints / name))
                .trigger(processingTime="1 second").start())

    def finished(query, count: int, began: float) -> list[dict]:
        """Wait for the query to finish (commit) its ``count``-th batch of this driver."""
        while len(batches) < count or query.lastProgress is None or \
                query.lastProgress["batchId"] != batches[count - 1]["batch"]:
            if query.exception() is not None:
                raise RuntimeError(str(query.exception()))
            if time.monotonic() - began > 600:
                raise TimeoutError(f"batch {count} not finished")
            time.sleep(0.2)
        done = batches[count - 1]
        found = next(p for p in query.recentProgress if p["batchId"] == done["batch"])
        parsing = found["observedMetrics"].get(job.PARSING_METRICS)
        done.update(input_rows=found["numInputRows"],
                    bad_records=parsing["bad_records"] if parsing is not None else 0,
                    duration_ms=found["durationMs"].get("triggerExecution"),
                    watermark=found["eventTime"].get("watermark"))
        return [done]

    # One query for the whole run (the watermark moves as in the job), stopped and
    # started again only for a replay.
    query = start()
    runs = []
    for index, step in enumerate(json.loads(Path(steps_file).read_text("utf-8"))):
        began = time.monotonic()
        if step.get("replay"):
            query.stop()
            commits = checkpoints / job.SINGLE_QUERY[layout] / "commits"
            last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
            (commits / str(last)).unlink()
            (commits / f".{last}.crc").unlink(missing_ok=True)
            query = start()
        else:
            # Hidden while written (the file source skips names starting with "."), then
            # renamed: a batch never reads half a file.
            hidden = inputs / f".batch-{index:04d}.txt"
            hidden.write_text("".join(value + "\n" for value in step["values"]), "utf-8")
            hidden.rename(inputs / hidden.name[1:])
        runs.append({"step": index, "replay": bool(step.get("replay")),
                     "batches": finished(query, len(batches) + 1, began),
                     "seconds": time.monotonic() - began})
    query.stop()
    Path(out).write_text(json.dumps({"layout": layout, "runs": runs, **store.tables()}),
                         "utf-8")
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
