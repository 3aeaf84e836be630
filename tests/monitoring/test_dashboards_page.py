"""The dashboards page (`evilnet dashboards serve` and `render`) on the real Cassandra
and Prometheus, with the monitoring fixture's keyspace, seen in headless Chromium
(Debian's chromium and chromium-driver) as a person sees it: the legend, the points
(their accessible labels, which Vega writes from what the point shows), the tables.

The expected values are the hand-worked ones of test_dashboard_queries.py: the page
runs the same statements as the Grafana panels, and a test here fails when it does not
(on the stack, as served; and without it, the definitions against the provisioned JSON).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest
from monitoring_fixture import LEADER_END, RANGE_FROM, RANGE_TO
from monitoring_helpers import BIN, REPO_ROOT
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from stack_clients import LOCAL_INVENTORY
from test_dashboard_queries import ALL_CITIES, CHOSEN, EXPECTED_CHOSEN, EXPECTED_TOP

from evilnet.dashboards.panels import dashboards
from evilnet.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless, and nothing of its own on the network (the machine has none beyond the stack).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1600,3000")
TREND_TITLES = {"tweets": "Tweets", "retweets": "Retweets", "unique_users": "Unique users"}
TOP_TITLES = {"tweets": "Top 5 cities by tweets", "retweets": "Top 5 cities by retweets",
              "unique_users": "Top 5 cities by unique users"}
# Vega's label of a point: "UTC: 23:50; Tweets: 4; City: Montréal".
POINT_LABEL = re.compile(r"^UTC: (?P<time>\d\d:\d\d); [^:]+: (?P<value>[\d,.]+); "
                         r"City: (?P<city>.+)$")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _location_args(dashboard_data) -> list[str]:
    # The stack's Cassandra and Prometheus from its inventory (not by hand): the
    # command then logs in to them with the inventory's logins where they are secured.
    return ["-i", str(LOCAL_INVENTORY), "--keyspace", dashboard_data.keyspace]


@pytest.fixture(scope="module")
def page_url(dashboard_data, tmp_path_factory) -> Iterator[str]:
    port = _free_port()
    log = tmp_path_factory.mktemp("dashboards") / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [str(BIN / "evilnet"), "dashboards", "serve", "--port", str(port),
             *_location_args(dashboard_data)],
            stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for(lambda: urlopen(url + "vega-embed.js", timeout=5).status == 200, 120,
                 what=f"the dashboards page on {url} ({log})", ignore=(OSError,))
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
        try:
            yield driver
        finally:
            driver.quit()


def panel(browser, title: str):
    (found,) = browser.find_elements(By.CSS_SELECTOR, f'.panel[data-title="{title}"]')
    return found


def drawn_legend(browser, title: str) -> list[str]:
    """The legend's labels of a chart panel, once Vega has drawn it."""
    def labels():
        texts = [e.text for e in panel(browser, title).find_elements(
            By.CSS_SELECTOR, ".role-legend-label text")]
        return texts or None
    return WebDriverWait(browser, 30).until(lambda _: labels())


def points(browser, title: str) -> dict[str, set[tuple[str, int]]]:
    """Per city, (HH:MM, value) of every point the chart draws."""
    shown: dict[str, set[tuple[str, int]]] = {}
    for mark in panel(browser, title).find_elements(By.CSS_SELECTOR, ".mark-symbol path"):
        label = mark.get_attribute("aria-label")
        if label:
            match = POINT_LABEL.match(label)
            assert match, label
            shown.setdefault(match["city"], set()).add(
                (match["time"], int(match["value"].replace(",", ""))))
    return shown


def clock(iso_minute: str) -> str:
    return iso_minute[-5:]


@pytest.mark.stack
def test_two_chosen_cities_show_their_fixture_windows(browser, page_url: str,
                                                      tmp_path: Path) -> None:
    browser.get(page_url)
    cities = Select(browser.find_element(By.ID, "city"))
    assert [option.text for option in cities.options] == ALL_CITIES
    for city in CHOSEN:
        cities.select_by_visible_text(city)
    for name, moment in (("from", RANGE_FROM), ("to", RANGE_TO)):
        field = browser.find_element(By.ID, name)
        field.clear()
        field.send_keys(moment.isoformat())
    browser.find_element(By.ID, "apply").click()
    WebDriverWait(browser, 30).until(lambda b: "city=" in b.current_url)
    for metric, title in TREND_TITLES.items():
        assert drawn_legend(browser, title) == CHOSEN, title
        # Across the UTC midnight; not the window before the range nor the one at its end.
        expected = {city: {(clock(start), value) for start, value in windows}
                    for city, windows in EXPECTED_CHOSEN[metric].items()}
        assert points(browser, title) == expected, title
    screenshot = tmp_path / "city-trends.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000


@pytest.mark.stack
def test_top_five_tables_list_the_fixtures_leaders_in_order(browser, page_url: str,
                                                            tmp_path: Path) -> None:
    # The panels read the hour that ended 2 whole minutes before the end of the range.
    browser.get(page_url + "?" + urlencode(
        {"to": (LEADER_END + timedelta(minutes=2, seconds=30)).isoformat()}))
    for metric, title in TOP_TITLES.items():
        rows = panel(browser, title).find_elements(By.CSS_SELECTOR, "tbody tr")
        shown = [(row.find_element(By.CSS_SELECTOR, ".city").text,
                  int(row.find_element(By.CSS_SELECTOR, ".value").text)) for row in rows]
        assert shown == EXPECTED_TOP[metric], title
    assert browser.save_screenshot(str(tmp_path / "top-cities.png"))


def grafana_panels(dashboard: dict) -> list[tuple[str, list[str]]]:
    """(title, query texts in target order) of every panel, rows' panels included."""
    found = []
    for item in dashboard["panels"]:
        for inner in item.get("panels", []) if item["type"] == "row" else [item]:
            found.append((inner["title"], [target.get("target", target.get("expr"))
                                           for target in inner["targets"]]))
    return found


@pytest.mark.stack
def test_every_panel_runs_its_grafana_panels_statement(browser, page_url: str,
                                                       dashboard_data) -> None:
    # A chosen topic opens the repeated topic row, so that every panel is on the page.
    browser.get(page_url + "?" + urlencode({"city": CHOSEN, "topic": "hockey"}, doseq=True))
    sections = browser.find_elements(By.CSS_SELECTOR, "section.dashboard")
    assert [s.get_attribute("data-uid") for s in sections] == [
        board["uid"] for board in dashboard_data.dashboards.values()]
    for section, board in zip(sections, dashboard_data.dashboards.values(), strict=True):
        shown = [(element.get_attribute("data-title"),
                  [pre.get_attribute("textContent")
                   for pre in element.find_elements(By.CSS_SELECTOR, "details.query pre")])
                 for element in section.find_elements(By.CSS_SELECTOR, ".panel")]
        assert shown == grafana_panels(board), board["title"]


@pytest.mark.stack
def test_render_writes_a_page_that_draws_offline_and_a_png_per_panel(
        browser, dashboard_data, tmp_path: Path) -> None:
    out = tmp_path / "render"
    result = subprocess.run(
        [str(BIN / "evilnet"), "dashboards", "render", "--out", str(out),
         *_location_args(dashboard_data),
         *[arg for city in CHOSEN for arg in ("--city", city)],
         "--from", RANGE_FROM.isoformat(), "--to", RANGE_TO.isoformat()],
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    for title in TREND_TITLES.values():
        key = "evilnet-city-trends--" + title.lower().replace(" ", "-")
        assert (out / f"{key}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", title
    # The static page carries its script: it draws from the file, with no server.
    browser.get((out / "index.html").as_uri())
    assert drawn_legend(browser, "Tweets") == CHOSEN
    assert points(browser, "Tweets") == {
        city: {(clock(start), value) for start, value in windows}
        for city, windows in EXPECTED_CHOSEN["tweets"].items()}
    assert not browser.find_elements(By.ID, "choices")  # a report: no form to submit


def test_the_page_panels_are_the_provisioned_dashboards() -> None:
    """What the page draws (evilnet.dashboards.panels) is, title for title and query
    for query, what Grafana is provisioned with (the checked-in JSON)."""
    for board in dashboards():
        provisioned = json.loads((REPO_ROOT / "grafana" / "dashboards" / board.file)
                                 .read_text("utf-8"))
        assert provisioned["uid"] == board.uid and provisioned["title"] == board.title
        assert [(panel.title, [query.text for query in panel.queries])
                for panel in board.all_panels()] == grafana_panels(provisioned), board.file
