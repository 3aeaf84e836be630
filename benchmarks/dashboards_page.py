"""Page load of `evilnet dashboards serve` with 1,130 cities to choose from and 24 h of data.

A keyspace of its own (dropped at the end) holds 1,130 cities of the catalog (the
$city choices, each with a window) and, for the chosen cities, 24 hours of 5-minute
windows sliding every minute (1,440 per city, as the job writes them), with a
leaderboard for the hour the Top cities panels read. The page is served by the real
command on the real Cassandra and Prometheus and loaded in Debian's headless
Chromium, with the chosen cities and the last 24 hours: a load is timed from the
request to the moment every chart of City trends has drawn its legend (Vega's SVG),
and the Top cities tables are on the page.

    python benchmarks/dashboards_page.py [--cassandra HOST] [--prometheus URL]
        [--chosen 2] [--loads 5]

Cassandra and Prometheus are inventories/local's unless given, with its logins where
it is secured (the fixture is written as the Cassandra admin, which then gives the
reader, the page's login, SELECT on the keyspace); given by hand, they are plaintext.

This is a benchmark, not a test: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import urlopen

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from evilnet.cassandra_clients import ADMIN, KEYSPACE_PERMISSIONS
from evilnet.cities import load_catalog
from evilnet.platform.inventory import Inventory
from evilnet.schema import apply_schema
from evilnet.spark.store import CassandraStore, WindowRow, connect
from evilnet.waiting import wait_for

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
INVENTORY = REPO / "inventories" / "local"
KEYSPACE = "evilnet_bench_dashboards"
CITIES = 1130
FIVE = timedelta(minutes=5)
TREND_TITLES = ("Tweets", "Retweets", "Unique users")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1600,3000")


def fixture(store: CassandraStore, chosen: int, now: datetime) -> list[str]:
    """Write the benchmark's data; return the chosen cities."""
    names = sorted({city.name for city in load_catalog().cities})[:CITIES]
    picked = names[:: len(names) // chosen][:chosen]
    minute = now.replace(second=0, microsecond=0)
    rows = [WindowRow(name, None, minute - timedelta(hours=1), minute - timedelta(minutes=55),
                      1, 0, 1) for name in names if name not in picked]
    for n, name in enumerate(picked):
        for step in range(24 * 60):
            start = minute - timedelta(hours=24) + timedelta(minutes=step)
            tweets = 20 + (step * (n + 3)) % 37
            rows.append(WindowRow(name, None, start, start + FIVE, tweets, tweets // 3,
                                  tweets // 2))
    store.write_windows(rows, now)
    # The leaderboards of the hours ending in the next minutes (the panels read the one
    # that ended 2 minutes before the load).
    hours = [WindowRow(name, None, end - timedelta(hours=1), end, 100 - i, 50 - i, 70 - i)
             for end in (minute + timedelta(minutes=m) for m in range(-3, 15))
             for i, name in enumerate(names[:10])]
    store.write_hours(hours)
    return picked


def drawn(driver) -> bool:
    for title in TREND_TITLES:
        panel = driver.find_element(By.CSS_SELECTOR, f'.panel[data-title="{title}"]')
        if not panel.find_elements(By.CSS_SELECTOR, ".role-legend-label text"):
            return False
    return bool(driver.find_elements(By.CSS_SELECTOR, "table.leaderboard tbody tr"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cassandra", help="a node [default: the inventory's]")
    parser.add_argument("--prometheus", help="its URL [default: the inventory's]")
    parser.add_argument("--chosen", type=int, default=2)
    parser.add_argument("--loads", type=int, default=5)
    args = parser.parse_args(argv)

    inventory = Inventory.load(INVENTORY, roles=REPO / "ansible" / "roles")
    security = None if args.cassandra else inventory.cassandra_security(ADMIN)
    node = args.cassandra or inventory.address(inventory.groups["cassandra"][0])
    cluster, session = connect([node], security=security)
    session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)
    apply_schema(session, KEYSPACE)
    if security:  # the pipeline's roles hold grants on `evilnet` only
        for role, permissions in KEYSPACE_PERMISSIONS.items():
            for permission in sorted(permissions):
                session.execute(f"GRANT {permission} ON KEYSPACE {KEYSPACE} TO {role.name}")
    now = datetime.now(UTC)
    began = time.perf_counter()
    chosen = fixture(CassandraStore(session, KEYSPACE), args.chosen, now)
    print(f"fixture: {CITIES} cities, {args.chosen} chosen with 24 h of windows "
          f"({24 * 60} each), written in {time.perf_counter() - began:.1f} s")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [str(BIN / "evilnet"), "dashboards", "serve", "--port", str(port), "-i", str(INVENTORY),
         *(["--cassandra", args.cassandra] if args.cassandra else []), "--keyspace", KEYSPACE,
         *(["--prometheus", args.prometheus] if args.prometheus else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    profile = tempfile.TemporaryDirectory(prefix="chromium-profile-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile.name}"):
        options.add_argument(flag)
    driver = None
    try:
        wait_for(lambda: urlopen(base + "vega-embed.js", timeout=5).status == 200, 120,
                 what="the dashboards page", ignore=(OSError,))
        driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
        url = base + "?" + urlencode({"city": chosen, "from": (now - timedelta(hours=24))
                                      .isoformat()}, doseq=True)
        options_shown = None
        seconds = []
        for _ in range(args.loads + 1):  # the first load fetches the script: reported apart
            start = time.perf_counter()
            driver.get(url)
            WebDriverWait(driver, 60, poll_frequency=0.02).until(drawn)
            seconds.append(time.perf_counter() - start)
            options_shown = len(driver.find_elements(By.CSS_SELECTOR, "#city option"))
        started = time.perf_counter()
        with urlopen(url, timeout=60) as response:
            size = len(response.read())
        server_side = time.perf_counter() - started
    finally:
        if driver:
            driver.quit()
        profile.cleanup()
        server.terminate()
        server.wait(timeout=30)
        session.execute(f"DROP KEYSPACE IF EXISTS {KEYSPACE}", timeout=120)
        cluster.shutdown()
    warm = seconds[1:]
    print(f"choice list: {options_shown} cities; page {size / 1024:.0f} KiB, built by the "
          f"server in {server_side:.2f} s")
    print(f"page load to every chart drawn: first {seconds[0]:.2f} s; then median "
          f"{statistics.median(warm):.2f} s, max {max(warm):.2f} s over {len(warm)} loads")
    return 0


if __name__ == "__main__":
    sys.exit(main())
