"""lookup('evilnet_bcrypt', PASSWORD, keep=HASH): a bcrypt hash of a password, stable across runs.

A thin adapter of evilnet/platform/web_auth.py: the hash in place (``keep``) while it
still matches the password, else a new one, so that a web configuration holding it
changes only when the password does.
"""

from __future__ import annotations

from ansible.errors import AnsibleError

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: evilnet_bcrypt
author: EvilNet
short_description: A bcrypt hash of a password, kept while it matches
description:
  - For each term (a password), C(keep) when it is a bcrypt hash of it, else a new bcrypt hash.
  - Never logs a value; tasks that use one set C(no_log).
options:
  _terms:
    description: Passwords.
    required: true
  keep:
    description: The hash in place (empty for none).
    default: ""
  rounds:
    description: bcrypt's cost (log2 of the rounds) of a new hash.
    default: 10
"""

EXAMPLES = r"""
- name: Write Prometheus's web configuration
  ansible.builtin.template:
    src: web.yml.j2
    dest: "{{ prometheus_web_config_file }}"
    mode: "0600"
  vars:
    prometheus_web_password_hash: >-
      {{ lookup('evilnet_bcrypt', lookup('evilnet_secret', 'prometheus_password'), keep=old_hash) }}
  no_log: true
"""

RETURN = r"""
_raw:
  description: The hashes, in the order asked.
  type: list
  elements: str
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        from evilnet.platform.web_auth import bcrypt_hash

        keep = str(kwargs.get("keep") or "").strip() or None
        try:
            rounds = int(kwargs.get("rounds", 10))
            return [bcrypt_hash(str(term), keep, rounds) for term in terms]
        except (ValueError, ImportError) as error:
            raise AnsibleError(f"evilnet_bcrypt: {error}") from None
