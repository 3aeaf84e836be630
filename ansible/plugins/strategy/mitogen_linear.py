"""Mitogen's linear strategy, the one ansible.cfg names.

Mitogen ships its strategy plugins inside the installed package, whose path
depends on the virtual environment; this module only re-exports the real one so
that ansible.cfg can name a path inside the repository.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
