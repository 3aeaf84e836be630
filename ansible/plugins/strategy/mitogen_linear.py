"""Mitogen's linear strategy, the one ansible.cfg names, without its CPU pinning.

Mitogen ships its strategy plugins inside the installed package, whose path
depends on the virtual environment; this module re-exports the real one so that
ansible.cfg can name a path inside the repository.

Mitogen also pins its own processes to CPUs and gives every process it spawns the
mask "all CPUs but the first". On a local connection those processes are the
hosts' commands: supervisord started from a task, and with it every service of
the local stack, ran on one core of our two (measured: all services' affinity mask
0x2, the machine half idle through `make up`). The null policy keeps every
process on every CPU, as Ansible's own strategy does.
"""

import ansible_mitogen.affinity
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

ansible_mitogen.affinity.policy = ansible_mitogen.affinity.Policy()

__all__ = ["StrategyModule"]
