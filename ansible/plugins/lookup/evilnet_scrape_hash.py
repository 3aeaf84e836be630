"""lookup('evilnet_scrape_hash', PASSWORD, salt=SALT): an exporter's hash of the scrape password.

A thin adapter of evilnet/metrics_endpoint.py: ``{"salt": ..., "password_hash": ...}``,
the JMX exporter agent's salted SHA-256 form, which the Python exporters check too.
The salt in place (``salt``) is kept, so that a file holding the hash changes only
when the password does; without one, a new random salt.
"""

from __future__ import annotations

from ansible.errors import AnsibleError

from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: evilnet_scrape_hash
author: EvilNet
short_description: The salted SHA-256 hash an exporter checks Prometheus's scrape password with
description:
  - For each term (a password), a dict of C(salt) (the one given, else a new random one) and
    C(password_hash) (SHA-256 of "salt:password", hex, as the JMX exporter agent 1.0.1 computes it).
  - Never logs a value; tasks that use one set C(no_log).
options:
  _terms:
    description: Passwords.
    required: true
  salt:
    description: The salt in place (empty for a new one).
    default: ""
"""

EXAMPLES = r"""
- name: Write an exporter's login
  ansible.builtin.template:
    src: metrics-login.yml.j2
    dest: /srv/evilnet/etc/producer/metrics-login.yml
    mode: "0600"
  vars:
    scrape_hash: >-
      {{ lookup('evilnet_scrape_hash', lookup('evilnet_secret', 'prometheus_scrape_password'),
                salt=salt_in_place) }}
  no_log: true
"""

RETURN = r"""
_raw:
  description: One dict per password, in the order asked.
  type: list
  elements: dict
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        from evilnet.metrics_endpoint import ScrapeLogin

        salt = str(kwargs.get("salt") or "").strip() or None
        if salt is not None and ":" in salt:
            raise AnsibleError("evilnet_scrape_hash: a salt must not hold ':'")
        logins = [ScrapeLogin.of(str(term), salt) for term in terms]
        return [{"salt": login.salt, "password_hash": login.password_hash} for login in logins]
