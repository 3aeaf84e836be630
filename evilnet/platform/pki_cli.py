"""`evilnet pki` and `evilnet secrets`: the inventory's CA, certificates and secrets.

Both work on the controller only, in the inventory's directories
(``evilnet_pki_dir``, ``evilnet_secrets_dir``, relative to the inventory). Neither
prints a key or a secret: values come in on stdin (``--secrets-stdin``, a JSON
object, as the pki role passes Vault's values), never on the command line.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

from evilnet.locations import Stack, inventory_options
from evilnet.platform import secrets as store
from evilnet.platform.inventory import Inventory, InventoryError

if TYPE_CHECKING:
    # Imported when a command runs: cryptography takes 0.2 s that `evilnet --help`
    # and the other commands need not pay.
    from evilnet.platform import pki

# What --secrets-stdin reads: the CA key's passphrase and the stores' password.
STDIN_KEYS = ("ca_passphrase", "pki_store_password")


@dataclass
class Site:
    """What the inventory says of its CA and secrets."""

    inventory: Inventory
    name: str
    pki_dir: Path
    secrets_source: str
    secrets_dir: Path | None
    certificate_days: int
    renew_within_days: int

    @classmethod
    def of(cls, stack: Stack | None) -> Site:
        inventory = Inventory.of(stack)
        if not inventory.hostvars:
            raise InventoryError(f"{inventory.path} has no hosts")
        host = sorted(inventory.hostvars)[0]
        base = inventory.path if inventory.path.is_dir() else inventory.path.parent
        setting, directory = inventory.setting, inventory.controller_dir

        source = setting("evilnet_secrets_source") or ""
        if source not in store.SOURCES:
            raise InventoryError(f"evilnet_secrets_source: {source or 'not set'} in "
                                 f"{inventory.path}, not one of {', '.join(store.SOURCES)}")
        return cls(inventory, base.resolve().name, directory("evilnet_pki_dir"), source,
                   directory("evilnet_secrets_dir") if source == "files" else None,
                   int(inventory.var(host, "pki_certificate_days", "pki")),
                   int(inventory.var(host, "pki_renew_within_days", "pki")))

    def requests(self) -> list[pki.Request]:
        from evilnet.platform import pki

        groups = self.inventory.groups
        return pki.requests_for({host: self.inventory.address(host)
                                 for host in self.inventory.hostvars}, groups)

    def values(self, given: dict[str, str]) -> tuple[bytes | None, str]:
        """The CA passphrase (none where the inventory keeps files) and the store password."""
        if self.secrets_source == "files":
            assert self.secrets_dir is not None
            store.ensure(self.secrets_dir, "pki_store_password")
            password = store.read(self.secrets_dir, "pki_store_password")
        elif "pki_store_password" in given:
            password = given["pki_store_password"]
        else:
            raise click.UsageError("this inventory keeps its secrets in Vault: give "
                                   "pki_store_password (and ca_passphrase) with --secrets-stdin")
        passphrase = given.get("ca_passphrase")
        return (passphrase.encode() if passphrase else None), password

    def authority(self, passphrase: bytes | None) -> pki.Authority:
        from evilnet.platform import pki

        return pki.Authority(self.pki_dir, self.name, passphrase)


def _stdin_values(enabled: bool) -> dict[str, str]:
    if not enabled:
        return {}
    try:
        given = json.loads(sys.stdin.read() or "{}")
    except json.JSONDecodeError:
        raise click.UsageError("--secrets-stdin: stdin is not a JSON object") from None
    if not isinstance(given, dict) or set(given) - set(STDIN_KEYS) or not all(
            isinstance(value, str) for value in given.values()):
        raise click.UsageError(f"--secrets-stdin: a JSON object of strings with keys among "
                               f"{', '.join(STDIN_KEYS)}")
    return given


_secrets_stdin = click.option(
    "--secrets-stdin", is_flag=True,
    help=f"Read {' and '.join(STDIN_KEYS)} from stdin as a JSON object (inventories "
         "whose secrets are in Vault; the pki role passes them so).")
_format = click.option("--format", "output", type=click.Choice(["table", "json"]),
                       default="table", show_default=True)


def _said(command: Callable[..., Any]) -> Callable[..., Any]:
    """The CA's and the secrets' own errors as `evilnet`'s one line and exit 2."""
    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            from evilnet.platform import pki
        except ModuleNotFoundError as error:
            # Hosts run the package without it: the CA lives on the controller only.
            raise click.ClickException(f"needs the {error.name} package, a controller "
                                       "tool (the project's dev extra)") from None
        try:
            return command(*args, **kwargs)
        except (pki.PkiError, store.SecretError) as error:
            raise click.ClickException(str(error)) from None
    return run


def _site() -> Site:
    return Site.of(click.get_current_context().find_object(Stack))


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@click.group("pki")
def pki_group() -> None:
    """The inventory's certificate authority on the controller, and the certificate of
    every host (docs/security.md). Keys never leave the controller but for the host
    they belong to (the pki role ships them)."""


@pki_group.command("init")
@inventory_options
@_secrets_stdin
@_format
@_said
def init(secrets_stdin: bool, output: str) -> None:
    """Create the inventory's CA if it has none (an existing CA is kept). Exit 0."""
    site = _site()
    passphrase, _ = site.values(_stdin_values(secrets_stdin))
    authority = site.authority(passphrase)
    created = authority.init()
    result = {"ca": str(authority.ca_cert_path), "created": created, **authority.ca_status()}
    if output == "json":
        _echo_json(result)
    else:
        click.echo(f"{'created' if created else 'kept'} the CA {result['subject']} "
                   f"({authority.ca_cert_path}, valid until {result['not_after']})")


@pki_group.command("issue")
@inventory_options
@_secrets_stdin
@_format
@click.option("--force", "force", multiple=True, metavar="HOST",
              help="Re-issue every certificate of HOST even if it is good (a rotation; "
                   "repeatable).")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Days a new certificate is valid [default: pki_certificate_days].")
@click.option("--renew-within", type=click.IntRange(min=0), default=None,
              help="Re-issue certificates expiring within this many days [default: "
                   "pki_renew_within_days].")
@_said
def issue(secrets_stdin: bool, output: str, force: tuple[str, ...], days: int | None,
          renew_within: int | None) -> None:
    """Issue every host's certificates that are missing, expire within
    pki_renew_within_days, name other names or were signed by another CA; create the
    CA first if there is none. A second run issues nothing. Exit 0."""
    site = _site()
    unknown = sorted(set(force) - set(site.inventory.hostvars))
    if unknown:
        raise click.UsageError(f"--force: {', '.join(unknown)}: not a host of "
                               f"{site.inventory.path}")
    passphrase, password = site.values(_stdin_values(secrets_stdin))
    authority = site.authority(passphrase)
    created = authority.init()
    issued = authority.issue(site.requests(), store_password=password,
                             days=days or site.certificate_days,
                             renew_within=(site.renew_within_days if renew_within is None
                                           else renew_within), force=force)
    rows = [{"host": host, "name": name, "reason": reason}
            for (host, name), reason in sorted(issued.items())]
    if output == "json":
        _echo_json({"ca_created": created, "issued": rows, "changed": bool(created or rows)})
        return
    if created:
        click.echo(f"created the CA ({authority.ca_cert_path})")
    for row in rows:
        click.echo(f"issued {row['host'] or 'the controller'} {row['name']}: {row['reason']}")
    if not rows:
        click.echo("every certificate is good: nothing issued")


# Each step of a CA rotation, and what the operator does next (docs/security.md).
ROTATION_STEPS = {
    "begin": "the next CA is trusted beside the current one: ship the trust files "
             "(playbooks/pki.yml) and restart the services one at a time, then promote",
    "promote": "the next CA signs from now on: the next `pki issue` (playbooks/pki.yml) "
               "re-issues every certificate; restart the services one at a time, then finish",
    "finish": "the old CA is no longer trusted: ship the trust files and restart the "
              "services one at a time",
}


@pki_group.command("rotate-ca")
@inventory_options
@_secrets_stdin
@click.argument("step", type=click.Choice(list(ROTATION_STEPS)))
@_said
def rotate_ca(secrets_stdin: bool, step: str) -> None:
    """Replace the CA in three steps, each followed by a rolling restart, so that no
    two hosts ever fail to trust each other: begin (trust the next CA too), promote
    (sign with it; every certificate is re-issued), finish (stop trusting the old).
    Exit 0."""
    site = _site()
    passphrase, _ = site.values(_stdin_values(secrets_stdin))
    authority = site.authority(passphrase)
    if step == "begin":
        subjects = [authority.begin_rotation().subject.rfc4514_string()]
    elif step == "promote":
        subjects = [authority.promote().subject.rfc4514_string()]
    else:
        subjects = [ca.subject.rfc4514_string() for ca in authority.finish()]
    click.echo(f"{step}: {'; '.join(subjects)}: {ROTATION_STEPS[step]}")


@pki_group.command("status")
@inventory_options
@_format
@_said
def status(output: str) -> None:
    """The CA and each host's certificates: expiry, names, whether each is good (it
    reads certificates only: no passphrase needed). Exit 0 all good, 1 if one is
    missing, expiring, stale or its key not 0600."""
    site = _site()
    authority = site.authority(None)
    ca = authority.ca_status()
    rows = authority.status(site.requests(), renew_within=site.renew_within_days)
    healthy = ca["key_mode"] == "0600" and all(row["state"] == "ok" for row in rows)
    if output == "json":
        _echo_json({"ca": ca, "certificates": rows, "healthy": healthy})
    else:
        click.echo(f"CA {ca['subject']}: valid {ca['days_left']} more days, key "
                   f"{ca['key_mode']}{', encrypted' if ca['key_encrypted'] else ''}")
        table = Table("host", "certificate", "state", "days left", "names")
        for row in rows:
            table.add_row(str(row["host"] or "(the controller)"), str(row["name"]),
                          str(row["state"]),
                          str(row["days_left"]), " ".join(row["names"]))  # type: ignore[arg-type]
        Console(soft_wrap=False).print(table)
    sys.exit(0 if healthy else 1)


@click.group("secrets")
def secrets_group() -> None:
    """The inventory's passwords and shared secrets (evilnet/platform/secrets.py names
    them). Values are never printed."""


def _files_site() -> Site:
    site = _site()
    if site.secrets_dir is None:
        raise click.UsageError(f"{site.inventory.path} keeps its secrets in Ansible Vault "
                               "(vault_evilnet_<name>, docs/security.md), not in files")
    return site


@secrets_group.command("init")
@inventory_options
@_format
@_said
def secrets_init(output: str) -> None:
    """Generate every secret the inventory does not have yet, each in a 0600 file
    (an existing one is kept). Exit 0."""
    site = _files_site()
    assert site.secrets_dir is not None
    generated = store.ensure_all(site.secrets_dir)
    if output == "json":
        _echo_json({"directory": str(site.secrets_dir), "generated": generated,
                    "changed": bool(generated)})
    else:
        click.echo(f"{len(generated)} generated, {len(store.SECRETS) - len(generated)} kept "
                   f"({site.secrets_dir})" + (f": {', '.join(generated)}" if generated else ""))


@secrets_group.command("status")
@inventory_options
@_format
@_said
def secrets_status(output: str) -> None:
    """Each secret's file, whether it exists and is 0600 (never its value).
    Exit 0 all present and private, 1 otherwise."""
    site = _files_site()
    assert site.secrets_dir is not None
    rows = store.status(site.secrets_dir)
    healthy = all(row["exists"] and row["private"] for row in rows)
    if output == "json":
        _echo_json({"secrets": rows, "healthy": healthy})
    else:
        table = Table("secret", "file", "mode", "for")
        for row in rows:
            table.add_row(str(row["name"]), str(row["file"]), str(row["mode"] or "missing"),
                          str(row["purpose"]))
        Console(soft_wrap=False).print(table)
    sys.exit(0 if healthy else 1)


@secrets_group.command("scan")
@inventory_options
@_format
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--processes/--no-processes", default=True, show_default=True,
              help="Also read every process's command line and environment (/proc).")
@_said
def secrets_scan(paths: tuple[Path, ...], processes: bool, output: str) -> None:
    """Look for the inventory's secrets (and private keys) where they must not be: in
    logs, in files anyone but their owner can read, on command lines, in environments.
    PATHS default to the roots of the inventory's hosts on this machine. Says which
    secret and where, never its value. Exit 0 none found, 1 found."""
    from evilnet.platform.footprint import host_roots

    site = _files_site()
    assert site.secrets_dir is not None
    values = store.known_values(site.secrets_dir)
    # Each value as it is and encoded (base64, URL-encoded): a leak in any form.
    forms = store.encoded_forms(values)
    roots = sorted({root.resolve() for root in paths or host_roots(site.inventory).values()})
    findings, too_large = store.scan_files(roots, forms,
                                           skip=(site.secrets_dir, site.pki_dir))
    if processes:
        findings += store.scan_processes(forms)
    rows = [{"where": found.where, "secret": found.secret, "why": found.why}
            for found in findings]
    if output == "json":
        _echo_json({"scanned": [str(root) for root in roots], "secrets": len(values),
                    "findings": rows, "too_large": [str(path) for path in too_large]})
    else:
        for row in rows:
            click.echo(f"{row['where']}: {row['secret']} ({row['why']})")
        click.echo(f"{len(rows)} finding(s); {len(values)} secrets looked for in "
                   f"{len(roots)} path(s)" + (" and /proc" if processes else "")
                   + (f"; {len(too_large)} file(s) too large to read" if too_large else ""))
    sys.exit(1 if rows else 0)
