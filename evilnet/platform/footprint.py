"""The resource footprint of the hosts this machine runs: memory and disk per
service, against their limits (the seed's section 6: "ideally the peak usage should
be 80 % of the total resource limit").

Measured on the machine it runs on, for the hosts whose root (``evilnet_root``) is
here: every host of the local stack, or, on real hosts, only the host it runs on
(it reads this machine's ``/proc`` and disks; nothing else's). The hosts and their
limits come from the inventory (``evilnet footprint``, on the controller), or from
a :class:`HostsFile` the prometheus role writes beside the exporter it runs
(``evilnet footprint --hosts-file FILE --serve ...``: no Ansible on the host).

- **memory**: the resident memory (RSS) of a service's processes. A service is what
  supervisord runs (its children carry ``SUPERVISOR_PROCESS_NAME`` and the socket
  under the host's root) or a systemd unit (the process's cgroup). The limit is the
  cgroup's ``memory.max`` where one is set (systemd ``MemoryMax``), enforced; else
  a JVM's configured heap (-Xmx, from the inventory or the role's default), shown
  as a reference only: a JVM's RSS exceeds its heap by design (metaspace, threads,
  direct buffers), so the alert ignores it.
- **disk**: bytes under the host's root, per service directory of ``data/`` and
  ``log/``, with the parts the stores keep there (Kafka's log segments,
  Cassandra's SSTables, the stream job's checkpoints), against the host's
  ``runtime_disk_limit`` (runtime role). Kafka's topics are bounded by time
  (retention.ms), not bytes, so the host's limit is the one that applies.

``rows()`` are the report's table; :class:`FootprintCollector` serves the same numbers
to Prometheus (metric names: :mod:`evilnet.platform.footprint_metrics`).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from evilnet.platform import footprint_metrics as names
from evilnet.platform.inventory import Inventory, InventoryError
from evilnet.platform.inventory import _ansible_tool as ansible_tool

FORMATS = ("table", "json")
ALERT_SHARE = names.ALERT_SHARE

# The configured heap of each JVM service, by the name its service manager runs it
# under: (variable, role) pairs whose sizes add up.
HEAPS: dict[str, tuple[tuple[str, str], ...]] = {
    "zookeeper": (("zookeeper_heap_size", "zookeeper"),),
    "kafka": (("kafka_heap_size", "kafka"),),
    "cassandra": (("cassandra_heap_size", "cassandra"),),
    "spark-master": (("spark_daemon_memory", "spark"),),
    # The worker's daemon and the executors it launches (its children).
    "spark-worker": (("spark_daemon_memory", "spark"), ("spark_worker_memory", "spark")),
    # The driver runs in the job's process tree (client mode).
    "stream-job": (("stream_job_driver_memory", "stream_job"),),
}
# Every host variable the limits are read from, with the role whose default applies
# where the inventory sets none: what a HostsFile holds for each host (the prometheus
# role renders it from this list, through ansible/generate_contracts.py).
LIMIT_VARIABLES: tuple[tuple[str, str], ...] = (
    ("runtime_disk_limit", "runtime"),
    *dict.fromkeys(pair for pairs in HEAPS.values() for pair in pairs),
)
# The stores' own files inside their data directory: (service, part, file pattern).
STORE_PARTS = (
    ("kafka", "segments", "**/*.log"),
    ("cassandra", "sstables", "data/**/*-Data.db"),
    ("stream-job", "checkpoints", "**/checkpoint/**/*"),
)

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


class FootprintError(RuntimeError):
    """The footprint cannot be measured (the inventory or a size cannot be read)."""


def parse_size(value: object) -> int:
    """A size in JVM syntax (``384m``, ``4G``) or with a unit (``2GiB``, ``512MB``), in
    bytes; the multiples are of 1024, as the JVM reads them."""
    match = _SIZE.match(str(value))
    if not match:
        raise FootprintError(f"not a size: {value!r} (write e.g. 512m, 4g, 20GiB)")
    number, unit = float(match[1]), match[2].lower()
    return int(number * 1024 ** " kmgt".index(unit or " "))


@dataclass(frozen=True)
class Usage:
    host: str
    service: str
    resource: str  # "memory" or "disk"
    part: str  # memory: "rss"; disk: "data", "logs", a store's part, or "total"
    used: int
    limit: int | None
    # Where the limit comes from: "memory.max", "heap", "runtime_disk_limit" or "".
    source: str

    @property
    def share(self) -> float | None:
        return self.used / self.limit if self.limit else None

    @property
    def alerted(self) -> bool:
        """Whether Prometheus alerts on this row's share (enforced limits, host totals)."""
        return self.source == "memory.max" or (self.resource == "disk" and self.part == "total")


# --- where the hosts are ------------------------------------------------------------

class Variables(Protocol):
    """Where the hosts' limits are read: an Inventory, or a HostsFile."""

    def var(self, host: str, name: str, role: str) -> object: ...


@dataclass(frozen=True)
class HostsFile:
    """The hosts an exporter measures, as the prometheus role writes them on its host
    (``prometheus_footprint_hosts_file``): a JSON object, each host's name to its
    ``evilnet_root`` and the LIMIT_VARIABLES, rendered by Ansible (the role's
    default where the inventory sets none)."""

    path: Path
    hostvars: dict[str, dict[str, object]]

    @classmethod
    def load(cls, path: Path) -> HostsFile:
        hostvars = json.loads(path.read_text())
        if not isinstance(hostvars, dict) or not all(
                isinstance(v, dict) and isinstance(v.get("evilnet_root"), str)
                for v in hostvars.values()):
            raise FootprintError("not a hosts file: each host needs its evilnet_root")
        return cls(path, hostvars)

    def var(self, host: str, name: str, role: str) -> object:
        try:
            return self.hostvars[host][name]
        except KeyError:
            raise InventoryError(f"{name}: not in {self.path} for {host}") from None

    def roots(self) -> dict[str, Path]:
        """Each host's root, for the hosts whose root is on this machine."""
        return {host: Path(str(v["evilnet_root"])) for host, v in self.hostvars.items()
                if Path(str(v["evilnet_root"])).is_dir()}


def host_roots(inventory: Inventory) -> dict[str, Path]:
    """Each host's ``evilnet_root`` as Ansible renders it, for the hosts whose root is
    on this machine."""
    result = subprocess.run(
        [ansible_tool("ansible"), "all", "-i", str(inventory.path), "-o", "-c", "local",
         "-m", "ansible.builtin.debug", "-a", "var=evilnet_root"],
        capture_output=True, text=True, check=False, timeout=120)
    roots = {}
    for line in result.stdout.splitlines():
        host, _, rest = line.partition(" | ")
        _, _, payload = rest.partition(" => ")
        if payload:
            root = json.loads(payload).get("evilnet_root")
            if isinstance(root, str) and not root.startswith("VARIABLE IS NOT DEFINED") and (
                    Path(root).is_dir()):
                roots[host] = Path(root)
    if result.returncode != 0 and not roots:
        raise InventoryError(f"cannot render evilnet_root: {result.stderr.strip()[-500:]}")
    return roots


# --- memory -------------------------------------------------------------------------

@dataclass
class _Service:
    pids: list[int]
    cgroup: str | None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace")
    except OSError:  # the process ended, or is not ours to read
        return None


def _owner(pid: int, roots: dict[str, Path]) -> tuple[str, str, str | None] | None:
    """(host, service, cgroup) of a process, if a service manager of a host runs it."""
    environ = _read(Path(f"/proc/{pid}/environ"))
    cgroup_text = _read(Path(f"/proc/{pid}/cgroup")) or ""
    cgroup = next((line.split("::", 1)[1] for line in cgroup_text.splitlines()
                   if line.startswith("0::")), None)
    if environ is None:
        return None
    env = dict(item.split("=", 1) for item in environ.split("\0") if "=" in item)
    name, socket = env.get("SUPERVISOR_PROCESS_NAME"), env.get("SUPERVISOR_SERVER_URL", "")
    if name and socket.startswith("unix://"):
        socket_path = Path(socket.removeprefix("unix://"))
        for host, root in roots.items():
            if socket_path.is_relative_to(root):
                return host, name, None
        return None
    # A systemd unit of the project, on a host that runs its own footprint: this
    # machine's own system.slice, not a container's (an nspawn machine's units sit
    # under its own payload/system.slice, with the same names).
    unit_cgroup = re.fullmatch(r"/system\.slice/([^/]+)\.service", cgroup or "")
    if unit_cgroup and len(roots) == 1:
        unit = unit_cgroup[1]
        if unit.startswith("evilnet-") or unit in HEAPS:
            return next(iter(roots)), unit.removeprefix("evilnet-"), cgroup
    return None


def service_of(pid: int, roots: dict[str, Path]) -> tuple[str, str] | None:
    """(host, service) of a process that a service manager of one of ``roots``' hosts
    runs (supervisord's children and theirs, or a systemd unit on a host that
    measures itself); None for any other process."""
    owner = _owner(pid, roots)
    return owner[:2] if owner else None


def _rss(pid: int) -> int:
    status = _read(Path(f"/proc/{pid}/status")) or ""
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) * 1024 if match else 0


def _memory_max(cgroup: str | None) -> int | None:
    if not cgroup:
        return None
    text = _read(Path("/sys/fs/cgroup") / cgroup.lstrip("/") / "memory.max")
    return int(text) if text and text.strip().isdigit() else None


def _heap(inventory: Variables, host: str, service: str) -> int | None:
    if service not in HEAPS:
        return None
    try:
        return sum(parse_size(inventory.var(host, variable, role))
                   for variable, role in HEAPS[service])
    except (InventoryError, FootprintError):
        return None  # not set, or a template only a play resolves


def memory(inventory: Variables, roots: dict[str, Path],
           proc: Path = Path("/proc")) -> list[Usage]:
    services: dict[tuple[str, str], _Service] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        owner = _owner(int(entry.name), roots)
        if owner:
            host, service, cgroup = owner
            services.setdefault((host, service), _Service([], cgroup)).pids.append(
                int(entry.name))
    usages = []
    for (host, service), found in sorted(services.items()):
        used = sum(_rss(pid) for pid in found.pids)
        enforced = _memory_max(found.cgroup)
        if enforced is not None:
            limit, source = enforced, "memory.max"
        else:
            limit = _heap(inventory, host, service)
            source = "heap" if limit else ""
        usages.append(Usage(host, service, "memory", "rss", used, limit, source))
    return usages


# --- disk ---------------------------------------------------------------------------

def tree_size(path: Path, pattern: str = "**/*") -> int:
    """Bytes allocated to the regular files under ``path`` matching ``pattern``, as du
    counts them (Kafka's preallocated indexes are sparse); files that vanish while
    counted, as Kafka's and Cassandra's do, are skipped."""
    total = 0
    for file in path.glob(pattern):
        try:
            if file.is_file() and not file.is_symlink():
                total += file.stat().st_blocks * 512
        except OSError:
            continue
    return total


def disk(inventory: Variables, roots: dict[str, Path]) -> list[Usage]:
    usages = []
    for host, root in sorted(roots.items()):
        try:
            limit = parse_size(inventory.var(host, "runtime_disk_limit", "runtime"))
        except InventoryError:
            limit = None
        source = "runtime_disk_limit" if limit else ""
        total = 0
        rows = []
        for part, folder in (("data", "data"), ("logs", "log")):
            base = root / folder
            for service_dir in sorted(p for p in base.iterdir() if p.is_dir()) if (
                    base.is_dir()) else []:
                used = tree_size(service_dir)
                total += used
                rows.append(Usage(host, service_dir.name, "disk", part, used, limit, source))
                if part == "data":
                    rows += [Usage(host, service, "disk", store_part,
                                   tree_size(service_dir, pattern), limit, source)
                             for service, store_part, pattern in STORE_PARTS
                             if service == service_dir.name]
        usages += rows
        usages.append(Usage(host, "all", "disk", "total", total, limit, source))
    return usages


def footprint(inventory: Variables, roots: dict[str, Path]) -> list[Usage]:
    return memory(inventory, roots) + disk(inventory, roots)


# --- output -------------------------------------------------------------------------

def human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def as_json(usages: Iterable[Usage]) -> str:
    return json.dumps([{**asdict(u), "share": u.share, "alerted": u.alerted}
                       for u in usages], indent=2)


def rows(usages: Iterable[Usage]) -> Iterator[tuple[str, ...]]:
    """Table rows: host, service, resource, part, used, limit (source), share."""
    for u in usages:
        share = "-" if u.share is None else f"{u.share:.0%}"
        if u.alerted and u.share is not None and u.share >= ALERT_SHARE:
            share += " !"
        limit = human(u.limit) + (f" ({u.source})" if u.source else "")
        yield u.host, u.service, u.resource, u.part, human(u.used), limit, share


# --- Prometheus ---------------------------------------------------------------------

class FootprintCollector:
    """A prometheus-client collector measuring the footprint at every scrape."""

    def __init__(self, inventory: Variables, roots: dict[str, Path]) -> None:
        self.inventory = inventory
        self.roots = roots

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        memory_used = GaugeMetricFamily(names.MEMORY_USED, "Resident memory of a service's "
                                        "processes.", labels=["host", "service"])
        memory_limit = GaugeMetricFamily(names.MEMORY_LIMIT, "A service's memory limit "
                                         "(memory.max: enforced; heap: the JVM's -Xmx).",
                                         labels=["host", "service", "source"])
        disk_used = GaugeMetricFamily(names.DISK_USED, "Bytes on disk under a host's root.",
                                      labels=["host", "service", "part"])
        disk_limit = GaugeMetricFamily(names.DISK_LIMIT, "The disk a host's root may use "
                                       "(runtime_disk_limit).", labels=["host"])
        limits: dict[str, int] = {}
        for u in memory(self.inventory, self.roots):
            memory_used.add_metric([u.host, u.service], u.used)
            if u.limit:
                memory_limit.add_metric([u.host, u.service, u.source], u.limit)
        for u in disk(self.inventory, self.roots):
            if u.part == "total":
                if u.limit:
                    limits[u.host] = u.limit
                continue  # Prometheus sums the parts itself
            disk_used.add_metric([u.host, u.service, u.part], u.used)
        for host, limit in sorted(limits.items()):
            disk_limit.add_metric([host], limit)
        yield from (memory_used, memory_limit, disk_used, disk_limit)


def announce(target_file: Path, address: str, port: int) -> None:
    """A Prometheus file_sd entry for the exporter (the prometheus role's footprint job,
    which keeps the scraped ``host`` labels: one exporter measures several hosts)."""
    target_file.parent.mkdir(parents=True, exist_ok=True)
    entry = [{"targets": [f"{address}:{port}"], "labels": {"host": f"footprint {address}"}}]
    partial = target_file.with_suffix(".tmp")
    partial.write_text(json.dumps(entry))
    partial.replace(target_file)  # Prometheus never reads half a file

