"""A test bed of separate Debian 12 hosts on this one machine (issue 13).

Each host of an inventory (``inventories/cluster`` by default) becomes a machine
booted by ``systemd-nspawn --boot``: systemd as its PID 1, sshd, a deploy user with
passwordless sudo, its own network namespace with one interface on the bed's bridge.
The controller reaches the hosts over SSH with a key the bed generated, as it would
reach real machines, so the roles' systemd path and ``become`` run for real.

The pieces, in the order ``up`` uses them:

- :mod:`testbed.layout`   where everything lives (``.run/testbed/``), the bed's subnet;
- :mod:`testbed.hosts`    the declared hosts: the inventory's hosts and addresses;
- :mod:`testbed.rootfs`   the Debian rootfs, built once by debootstrap and cached, and
                          the controller's SSH key;
- :mod:`testbed.network`  the bridge and each host's namespace, with no route beyond
                          the bridge;
- :mod:`testbed.machines` a host's machine: overlay root, nspawn, stop and removal;
- :mod:`testbed.bed`      up, down and status of the whole bed, hosts in parallel.

Run it as ``python -m testbed up|down|status`` (``make cluster-up`` and friends).
The bed lives outside the ``evilnet`` package on purpose: it is the repository's test
infrastructure, not part of what is installed on a controller.
"""
