"""lookup('evilnet_secret', NAME): one of the pipeline's secrets, where the inventory keeps it.

A thin adapter: the names, the files and the Vault variables are those of
evilnet/platform/secrets.py (the one home of the catalog), read on the controller.
"""

from __future__ import annotations

from pathlib import Path

from ansible.errors import AnsibleError

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: evilnet_secret
author: EvilNet
short_description: A secret of the pipeline, by its name in evilnet/platform/secrets.py
description:
  - With C(evilnet_secrets_source=files), the secret's file under C(evilnet_secrets_dir)
    (relative to the inventory directory) on the controller, generated at random the first
    time (0600) and kept from then on.
  - With C(evilnet_secrets_source=vault), the Ansible Vault variable C(vault_evilnet_<name>).
  - Never logs a value; tasks that use one set C(no_log).
options:
  _terms:
    description: Names of secrets (evilnet.platform.secrets.SECRETS).
    required: true
"""

EXAMPLES = r"""
- name: Render the brokers' JAAS file
  ansible.builtin.template:
    src: kafka_server_jaas.conf.j2
    dest: "{{ kafka_conf_dir }}/kafka_server_jaas.conf"
    mode: "0600"
  vars:
    kafka_broker_password: "{{ lookup('evilnet_secret', 'kafka_broker_password') }}"
  no_log: true
"""

RETURN = r"""
_raw:
  description: The secrets' values, in the order asked.
  type: list
  elements: str
"""


class LookupModule(LookupBase):
    def _setting(self, variables: dict, name: str) -> str:
        if name not in variables:
            raise AnsibleError(f"evilnet_secret: {name} is not set (the inventory's "
                               "group_vars/all.yml sets it: docs/security.md)")
        return str(self._templar.template(variables[name]))

    def run(self, terms, variables=None, **kwargs):
        from evilnet.platform import secrets

        variables = variables or {}
        source = self._setting(variables, "evilnet_secrets_source")
        if source not in secrets.SOURCES:
            raise AnsibleError(f"evilnet_secret: evilnet_secrets_source is {source!r}, not "
                               f"one of {', '.join(secrets.SOURCES)}")
        values = []
        for name in terms:
            try:
                item = secrets.secret(name)
                if source == "vault":
                    if item.vault_variable not in variables:
                        raise AnsibleError(f"evilnet_secret: {item.vault_variable} is not set "
                                           "(add it to the inventory's vault: docs/security.md)")
                    values.append(str(self._templar.template(variables[item.vault_variable])))
                    continue
                directory = Path(self._setting(variables, "evilnet_secrets_dir"))
                if not directory.is_absolute():
                    directory = Path(self._setting(variables, "inventory_dir")) / directory
                secrets.ensure(directory, name)
                values.append(secrets.read(directory, name))
            except (secrets.SecretError, OSError) as error:
                raise AnsibleError(f"evilnet_secret: {error}") from None
        return values
