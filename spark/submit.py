"""Submit the Kafka round-trip smoke job (``smoke_kafka_roundtrip.py``) to a Spark master.

Builds one ``spark-submit`` command line and runs it (``--print`` shows it instead)::

    python spark/submit.py \\
        --spark-home .run/hosts/spark-master/venv/lib/python3.11/site-packages/pyspark \\
        --conf-dir .run/hosts/spark-master/etc/spark \\
        --master spark://127.0.1.7:7077 \\
        --bootstrap-servers 127.0.1.4:9092,127.0.1.5:9092 \\
        --jars-dir .run/hosts/spark-master/opt/spark-sql-kafka-<version>-<key>/lib \\
        -- --expect-worker 127.0.1.8

which runs (client mode: the driver runs here, the executors on the workers)::

    SPARK_CONF_DIR=<conf-dir> <spark-home>/bin/spark-submit --master spark://127.0.1.7:7077 \\
        --jars <jars-dir>/commons-pool2-….jar,<jars-dir>/kafka-clients-….jar,… \\
        --conf spark.cores.max=1 --conf spark.executor.memory=512m \\
        spark/smoke_kafka_roundtrip.py --bootstrap-servers … --input-topic … --output-topic …

``--jars`` puts the staged Kafka connector on the driver's class path and ships it to
the executors (they fetch it from the driver), so it only has to exist where the job is
submitted. Without ``--jars-dir`` the ``spark.jars`` of the host's spark-defaults.conf
(written by the spark role, naming the same jars) applies. Arguments after ``--`` go
to the job. The job's verdict is its exit status and its last line, ``SMOKE_RESULT``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from pathlib import Path

JOB = Path(__file__).with_name("smoke_kafka_roundtrip.py")


def build_command(args: argparse.Namespace, job_args: list[str]) -> list[str]:
    spark_submit = (str(Path(args.spark_home).resolve() / "bin" / "spark-submit") if args.spark_home
                    else "spark-submit")
    command = [spark_submit, "--master", args.master]
    if args.jars_dir:
        jars = sorted(Path(args.jars_dir).resolve().glob("*.jar"))
        if not jars:
            raise SystemExit(f"no jars in {args.jars_dir}")
        command += ["--jars", ",".join(str(jar) for jar in jars)]
    command += ["--conf", f"spark.cores.max={args.cores}",
                "--conf", f"spark.executor.memory={args.executor_memory}"]
    for conf in args.conf:
        command += ["--conf", conf]
    command.append(str(args.job))
    if args.bootstrap_servers:
        command += ["--bootstrap-servers", args.bootstrap_servers]
    command += ["--input-topic", args.input_topic, "--output-topic", args.output_topic]
    return command + job_args


def environment_overrides(args: argparse.Namespace) -> dict[str, str]:
    overrides = {}
    if args.spark_home:
        overrides["SPARK_HOME"] = str(Path(args.spark_home).resolve())
    if args.conf_dir:
        overrides["SPARK_CONF_DIR"] = str(Path(args.conf_dir).resolve())
    return overrides


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    own, job_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--master", required=True, help="spark://host:port of the master")
    parser.add_argument("--bootstrap-servers", help="host:port[,...] of the Kafka brokers")
    parser.add_argument("--input-topic", default="evilnet.smoke.in")
    parser.add_argument("--output-topic", default="evilnet.smoke.out")
    parser.add_argument("--jars-dir", help="the staged Kafka connector's lib/ (every *.jar is "
                                           "passed with --jars)")
    parser.add_argument("--spark-home", help="SPARK_HOME (the installed pyspark package); "
                                             "default: spark-submit on PATH")
    parser.add_argument("--conf-dir", help="SPARK_CONF_DIR, e.g. a Spark host's etc/spark")
    parser.add_argument("--cores", type=int, default=1, help="spark.cores.max of the job")
    parser.add_argument("--executor-memory", default="512m")
    parser.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                        help="more Spark properties (repeatable)")
    parser.add_argument("--job", type=Path, default=JOB, help="the PySpark file to submit")
    parser.add_argument("--print", dest="print_only", action="store_true",
                        help="print the command line instead of running it")
    return parser.parse_args(own), job_args


def main(argv: list[str] | None = None) -> int:
    args, job_args = parse_args(sys.argv[1:] if argv is None else argv)
    command = build_command(args, job_args)
    overrides = environment_overrides(args)
    shown = [f"{key}={shlex.quote(value)}" for key, value in overrides.items()]
    print(" ".join([*shown, shlex.join(command)]), file=sys.stderr, flush=True)
    if args.print_only:
        return 0
    return subprocess.run(command, env={**os.environ, **overrides}, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
