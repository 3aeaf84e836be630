"""The pipeline's Kafka ACLs, kept to one exact set (`evilnet topics acls`).

The brokers deny by default (``allow.everyone.if.no.acl.found=false``; the admin and
the brokers are super users): a principal may do what an ACL here allows and
nothing else. The set is derived from the contracts, never written twice:

- the producers' principal writes the posts topic and the dead-letter topic (Write
  implies Describe: metadata; since Kafka 3.0 it also allows an idempotent producer);
- the stream job's principal reads the posts topic, with consumer groups whose ids
  start with :data:`evilnet.kafka_clients.STREAM_JOB_GROUP_PREFIX` only.

Converging adds what is missing and removes any other ACL of these principals on
the pipeline's topics and groups, on a pattern wider than one name (PREFIXED, the
``*`` wildcard) or on the cluster (a grant made by hand there is taken back on the
next run). A LITERAL grant of theirs on another topic or group (a test's or a
benchmark's, given by whoever made it) is left alone, as are the ACLs of other
principals: it reaches none of the pipeline's data, and taking it back would break
that topic's reader in the middle of its work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from evilnet.contracts import DEAD_LETTER_TOPIC, TWEETS_TOPIC
from evilnet.kafka_clients import COMMAND_CLIENT, PRODUCER, STREAM_JOB, Principal


class AclError(RuntimeError):
    """The cluster refused to list or change the ACLs."""


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``principal`` may ``operation`` the ``resource`` (a topic or a
    group) named ``name`` (literally, or every name starting with it)."""

    principal: str  # User:<name>
    operation: str  # kafka-python's ACLOperation name: READ, WRITE, …
    resource: str  # TOPIC or GROUP
    name: str
    pattern: str = "LITERAL"  # or PREFIXED

    def __str__(self) -> str:
        prefix = "prefix " if self.pattern == "PREFIXED" else ""
        return (f"{self.principal} may {self.operation.lower()} {self.resource.lower()} "
                f"{prefix}{self.name!r}")


def _user(principal: Principal) -> str:
    return f"User:{principal.name}"


def pipeline_grants(group_prefix: str) -> list[Grant]:
    """Every ACL the pipeline needs (see the module's doc)."""
    return sorted([
        Grant(_user(PRODUCER), "WRITE", "TOPIC", TWEETS_TOPIC),
        Grant(_user(PRODUCER), "WRITE", "TOPIC", DEAD_LETTER_TOPIC),
        Grant(_user(STREAM_JOB), "READ", "TOPIC", TWEETS_TOPIC),
        Grant(_user(STREAM_JOB), "READ", "GROUP", group_prefix, "PREFIXED"),
    ])


def _acl(grant: Grant):
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    return ACL(grant.principal, "*", ACLOperation[grant.operation], ACLPermissionType.ALLOW,
               ResourcePattern(ResourceType[grant.resource], grant.name,
                               ACLResourcePatternType[grant.pattern]))


def _on_another_topic_or_group(acl, ours: set[str]) -> bool:
    """Whether ``acl`` names one topic or group literally, and not one of ``ours``."""
    pattern = acl.resource_pattern
    return (pattern.resource_type.name in ("TOPIC", "GROUP")
            and pattern.pattern_type.name == "LITERAL"
            and pattern.resource_name not in ours and pattern.resource_name != "*")


def _grant(acl) -> Grant | None:
    """An ACL as a Grant; None for what no Grant can say (a DENY, one host only)."""
    if acl.permission_type.name != "ALLOW" or acl.host != "*":
        return None
    pattern = acl.resource_pattern
    return Grant(acl.principal, acl.operation.name, pattern.resource_type.name,
                 pattern.resource_name, pattern.pattern_type.name)


def ensure_acls(bootstrap: str, grants: list[Grant],
                security: Mapping[str, str] | None = None) -> list[str]:
    """Add the missing ``grants`` and remove every other ACL of their principals;
    what changed, one line each. Run as the admin principal (``security``)."""
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        KafkaAdminClient,
        ResourcePatternFilter,
        ResourceType,
    )

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="evilnet-acls",
                             request_timeout_ms=30000, **COMMAND_CLIENT, **(security or {}))
    changes: list[str] = []
    try:
        wanted = set(grants)
        any_resource = ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)
        existing = []
        for principal in sorted({grant.principal for grant in grants}):
            found, error = admin.describe_acls(ACLFilter(
                principal, None, ACLOperation.ANY, ACLPermissionType.ANY, any_resource))
            if error.errno:
                raise AclError(f"cannot list the ACLs of {principal}: {error.__name__}")
            existing += found
        present = {_grant(acl) for acl in existing}
        missing = sorted(wanted - present)
        if missing:
            result = admin.create_acls([_acl(grant) for grant in missing])
            if result["failed"]:
                raise AclError("cannot add ACLs: " + "; ".join(
                    sorted({error.__name__ for error in result["failed"]})))
            changes += [f"added {grant}" for grant in missing]
        ours = {grant.name for grant in grants}
        extra = [acl for acl in existing if _grant(acl) not in wanted
                 and not _on_another_topic_or_group(acl, ours)]
        if extra:
            admin.delete_acls([ACLFilter(acl.principal, acl.host, acl.operation,
                                         acl.permission_type, ResourcePatternFilter(
                                             acl.resource_pattern.resource_type,
                                             acl.resource_pattern.resource_name,
                                             acl.resource_pattern.pattern_type))
                               for acl in extra])
            changes += [f"removed {_grant(acl) or acl}" for acl in extra]
    finally:
        admin.close()
    return changes
