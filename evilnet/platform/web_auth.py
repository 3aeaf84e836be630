"""Basic-auth password hashes for web configurations (Prometheus's ``basic_auth_users``).

Prometheus's web configuration names each user's bcrypt hash, never the password.
A bcrypt hash holds a random salt, so hashing again gives another text: a role that
hashed at every run would rewrite the file every run. :func:`bcrypt_hash` keeps the
hash already in place while it still matches the password, and makes a new one only
for a new password (a rotation). Runs on the controller (``bcrypt`` is a controller
dependency); the hash goes to the host, the password never needs to.
"""

from __future__ import annotations

# bcrypt's cost: 2**10 rounds, ~50 ms on these machines. Prometheus checks the hash of
# every request it has not seen lately, so a higher cost is paid per scrape by Grafana
# and the tools; 10 is the cost of Prometheus's own documentation.
DEFAULT_ROUNDS = 10


def bcrypt_hash(password: str, keep: str | None = None, rounds: int = DEFAULT_ROUNDS) -> str:
    """A bcrypt hash of ``password``: ``keep`` where it is one of it, else a new one."""
    import bcrypt

    if keep:
        try:
            if bcrypt.checkpw(password.encode(), keep.encode()):
                return keep
        except ValueError:
            pass  # not a bcrypt hash: replaced
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds)).decode()


def matches(password: str, hashed: str) -> bool:
    """Whether ``hashed`` is a bcrypt hash of ``password``."""
    import bcrypt

    return bcrypt.checkpw(password.encode(), hashed.encode())
