"""Files generated from the Python contracts and committed (the dashboards, Ansible's
contract variables): one way to write them, or to check that they are current.

A generator builds what each file must hold; :func:`main` writes what differs, or
with ``--check`` writes nothing and exits 1 naming each stale file, so a test (and
CI) catches a rename in Python that was not regenerated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def main(argv: list[str] | None, *, description: str, default_out: Path, command: str,
         build: Callable[[Path], dict[Path, str]], owned: str | None = None) -> int:
    """Parse ``--check``/``--out``, then sync what ``build(out)`` returns.

    ``owned``: a glob of files in the ``--out`` folder that only this generator writes;
    one it no longer builds is removed (or, with ``--check``, reported).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a checked-in file differs")
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    expected = build(args.out)
    stale = sorted(path for path, text in expected.items()
                   if not path.exists() or path.read_text(encoding="utf-8") != text)
    folder = args.out if args.out.is_dir() or owned else args.out.parent
    extra = sorted(path for path in folder.glob(owned) if path not in expected) if owned else []
    if args.check:
        for path in stale + extra:
            print(f"{path}: differs from what {command} generates", file=sys.stderr)
        if stale or extra:
            print(f"regenerate: .venv/bin/python {command}", file=sys.stderr)
        return 1 if stale or extra else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(expected[path], encoding="utf-8")
    for path in extra:
        path.unlink()
    print(f"{command}: {len(expected)} file(s) in {args.out}, {len(stale)} written, "
          f"{len(extra)} removed")
    return 0
