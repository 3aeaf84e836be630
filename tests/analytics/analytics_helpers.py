"""Helpers of the analytics tests: the test instance of the stream job, and fixtures' data."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from stack_clients import LOCAL_INVENTORY, evilnet_command

from evilnet.platform.playbook import PlaybookRun, run_playbook
from evilnet.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
JOB_NAME = "stream-job-test"
KEYSPACE = "evilnet_test"

CITIES = ["Montréal", "St. John's", "Trois-Rivières", "Toronto", "Vancouver", "Québec"]
TOPICS = ["hockey", "food", "traffic"]


def evilnet(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """An ``evilnet`` command on the local inventory: where the test names no location,
    the command takes the inventory's, and its logins where the service is secured."""
    return subprocess.run([*evilnet_command(BIN / "evilnet"), *args], capture_output=True,
                          text=True, timeout=timeout, cwd="/", check=False)


def deploy_job(variables: dict) -> PlaybookRun:
    """Run ansible/playbooks/stream-job.yml with these role variables."""
    return run_playbook("ansible/playbooks/stream-job.yml", LOCAL_INVENTORY,
                        project_dir=REPO_ROOT, extra_args=("-e", json.dumps(variables)),
                        timeout=900)


def wait_until(condition: Callable[[], object], timeout: float, what: str,
               interval: float = 1.0):
    """The truthy value ``condition`` returns, polled once a second (the project's wait_for)."""
    return wait_for(condition, timeout, what=what, interval=interval)


def acceptance_lines(start: datetime, *, posts: int = 900, seed: int = 11,
                     rate: float = 1.5) -> list[str]:
    """Synthetic stream lines (retweets, two topics, two cities, accents, apostrophes), plus
    duplicate deliveries and events out of order by up to a minute, as a stream has them."""
    from evilnet.producer.generator import synthesize, synthetic_rules

    rules = synthetic_rules(CITIES, TOPICS)
    lines = [json.dumps(post, ensure_ascii=False)
             for post in synthesize(rules, posts=posts, seed=seed, start=start, mean_rate=rate)]
    rng = random.Random(seed)
    # Out of order: each post moves back by up to 40 s of stream time (posts arrive
    # ~1.5/s), so a post may arrive up to a minute after later ones.
    keyed = [(index + rng.uniform(0, 40 * rate), line) for index, line in enumerate(lines)]
    lines = [line for _, line in sorted(keyed, key=lambda pair: pair[0])]
    # Duplicates: every 25th line delivered again a few lines later.
    out = []
    for index, line in enumerate(lines):
        out.append(line)
        if index % 25 == 0 and index + 5 < len(lines):
            out.insert(len(out) - rng.randint(0, 3), line)
    return out


def created_at(line: str) -> datetime:
    return datetime.fromisoformat(json.loads(line)["data"]["created_at"])


def max_disorder(lines: list[str]) -> timedelta:
    """How far behind the latest post seen so far a post arrives, at most."""
    latest, worst = None, timedelta(0)
    for line in lines:
        moment = created_at(line)
        latest = moment if latest is None else max(latest, moment)
        worst = max(worst, latest - moment)
    return worst
