"""Tenants: whose a client key is, and what that scopes (docs/tenants.md).

`HERALD_API_KEYS` entries are `TENANT=KEY` (several keys may share a tenant: rotation) or a bare
`KEY`, a tenant of its own named `key-` + the first 8 hex digits of the key's SHA-256 (so writing
`key-1a2b3c4d=NEWKEY` beside a bare key adds a second key to that same tenant).

The first entry's tenant is the deployment's *default tenant*. Its scope is empty: the ids it derives
from client-chosen names (a user's workflow, a report's id, an SMS quota, a user's HeraldUser value)
are exactly the ones Herald derived before tenants, and it owns every run recorded without a tenant
(started before tenants). So a single-key deployment keeps its users, reports, quotas and jobs across
the upgrade, and onboarding another tenant (appended after it) moves nothing. Every other tenant's
scope is its name, mixed into those digests, so the same `userId` in two tenants names two users.

This module does no I/O: the workflows import it (through common/models.py).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from temporalio.common import SearchAttributeKey

TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
_TENANT = re.compile(TENANT_PATTERN)
BARE_KEY_PREFIX = "key-"
# Every run records its tenant: a search attribute (the Web UI's filter, the admin's `?tenant=`) and a
# memo entry beside the job's state (read by the describe the status routes do anyway).
TENANT_KEY = SearchAttributeKey.for_keyword("HeraldTenant")
TENANT_MEMO_KEY = "herald_tenant"
# The metric label of a run whose tenant the process does not know (not configured, or none recorded):
# the label stays bounded by the configuration, whatever the runs carry.
OTHER_TENANT = "other"


class TenantKeysError(ValueError):
    """A `HERALD_API_KEYS` entry that names no valid tenant or key; the message says which and why."""


class TenantWeightsError(ValueError):
    """A `HERALD_TENANT_WEIGHTS` entry that is not TENANT=WEIGHT with a weight Temporal takes."""


def bare_key_tenant(key: str) -> str:
    """The tenant of a bare key: `key-` and the first 8 hex digits of its SHA-256."""
    return BARE_KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:8]


def valid_tenant(name: str) -> bool:
    return bool(_TENANT.match(name))


def parse_entry(entry: str) -> tuple[str, str]:
    """(tenant, key) of one entry. A `=` only at the end is a bare key's base64 padding (`abc==`)."""
    if "=" not in entry.rstrip("="):
        if entry.endswith("=") and entry.count("=") == 1 and valid_tenant(entry[:-1]):
            raise TenantKeysError(f"HERALD_API_KEYS: {entry!r} names tenant {entry[:-1]!r} but no key after the '='")
        return bare_key_tenant(entry), entry
    tenant, _, key = entry.partition("=")
    if not valid_tenant(tenant):
        raise TenantKeysError(
            f"HERALD_API_KEYS: {tenant!r} (in an entry TENANT=KEY) is not a tenant name: 1 to 63 lowercase "
            "letters, digits and '-', starting with a letter or digit"
        )
    if not key.strip():
        raise TenantKeysError(f"HERALD_API_KEYS: the entry for tenant {tenant!r} has no key after the '='")
    return tenant, key.strip()


# Temporal clamps a fairness weight to [0.001, 1000]: a weight outside is refused rather than clamped.
MIN_WEIGHT, MAX_WEIGHT = 0.001, 1000.0


def parse_weights(text: str) -> dict[str, float]:
    """`HERALD_TENANT_WEIGHTS`, `acme=3,globex=1`: each named tenant's fairness weight (docs/tenants.md)."""
    weights: dict[str, float] = {}
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        tenant, sep, number = (part.strip() for part in entry.partition("="))
        if not sep or not valid_tenant(tenant):
            raise TenantWeightsError(
                f"HERALD_TENANT_WEIGHTS: {entry!r} is not TENANT=WEIGHT (a tenant name: 1 to 63 lowercase letters, "
                "digits and '-', starting with a letter or digit; e.g. acme=3,globex=1)"
            )
        try:
            weight = float(number)
        except ValueError:
            weight = float("nan")
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise TenantWeightsError(
                f"HERALD_TENANT_WEIGHTS: the weight of {tenant!r} is {number!r}; a weight is a number from "
                f"{MIN_WEIGHT:g} to {MAX_WEIGHT:g} (1 is every other tenant's)"
            )
        if tenant in weights:
            raise TenantWeightsError(f"HERALD_TENANT_WEIGHTS: {tenant!r} is given two weights")
        weights[tenant] = weight
    return weights


def parse_keys(entries: list[str]) -> dict[str, str]:
    """Each client key → its tenant, in the entries' order (the first entry's is the default tenant)."""
    keys: dict[str, str] = {}
    for entry in entries:
        tenant, key = parse_entry(entry)
        if keys.get(key, tenant) != tenant:
            raise TenantKeysError(
                f"HERALD_API_KEYS: one key is given to two tenants ({keys[key]!r} and {tenant!r}); a key "
                "belongs to one tenant"
            )
        keys[key] = tenant
    return keys


@dataclass(frozen=True)
class Tenant:
    """A caller's tenant, as the API's routes are given it (api/core/auth.py)."""

    name: str
    # The deployment's default tenant (the first entry of HERALD_API_KEYS): see the module's doc.
    default: bool = False

    @property
    def scope(self) -> str:
        """What the ids derived from client-chosen names are scoped by: empty for the default tenant."""
        return "" if self.default else self.name

    def owns(self, recorded: str | None) -> bool:
        """Whether a run or schedule that recorded `recorded` (None: recorded before tenants) is this tenant's."""
        return recorded == self.name or (recorded is None and self.default)


def owned_by(tenant: Tenant | None, memo: Mapping[str, Any]) -> bool:
    """Whether the run (or schedule) whose memo is `memo` is `tenant`'s; None (an admin route): every one is."""
    recorded = memo.get(TENANT_MEMO_KEY)
    return tenant is None or tenant.owns(recorded if isinstance(recorded, str) else None)


def scoped(scope: str, value: str) -> str:
    """`value` inside a tenant's scope, for a digest: unchanged in the default tenant's (empty) scope.
    A NUL separates them, which neither a tenant name nor a userId or number can hold."""
    return f"{scope}\x00{value}" if scope else value


def metric_label(tenant: str | None, configured: frozenset[str] | set[str]) -> str:
    """The `tenant` label of a metric: a configured tenant's name, else OTHER_TENANT."""
    return tenant if tenant is not None and tenant in configured else OTHER_TENANT
