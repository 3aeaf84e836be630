"""``python -m testbed up|down|status [--inventory DIR] [HOST ...]`` (as root).

With host names, only those hosts are brought up, removed or shown (``down`` then
keeps the bridge and the shared storage for the others).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from testbed import bed, layout
from testbed.hosts import HostListError, read_hosts, select


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("up", "down", "status"))
    parser.add_argument("hosts", nargs="*", metavar="HOST",
                        help="only these hosts of the inventory (default: all)")
    parser.add_argument("--inventory", "-i", type=Path, default=layout.DEFAULT_INVENTORY,
                        help="the inventory whose hosts the bed makes (default: %(default)s)")
    arguments = parser.parse_intermixed_args(argv)
    try:
        every_host = read_hosts(arguments.inventory)
        hosts = select(every_host, arguments.hosts)
    except HostListError as error:
        parser.error(str(error))
    if os.geteuid() != 0:
        parser.error("the bed makes namespaces, mounts and machines: run it as root")
    paths = layout.Paths()
    if arguments.action == "up":
        bed.up(hosts, paths, every_host=every_host)
    elif arguments.action == "down":
        bed.down(hosts, paths, whole_bed=not arguments.hosts)
    else:
        states = bed.status(hosts, paths)
        for entry in states:
            shown = entry.state or ("no SSH answer" if entry.running else "down")
            print(f"{entry.host.name:<16} {entry.host.address!s:<14} {shown}")
        return 0 if all(entry.state in bed.BOOTED_STATES for entry in states) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
