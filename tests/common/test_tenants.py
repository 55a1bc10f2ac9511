"""HERALD_API_KEYS's tenants (common/tenants.py): entries, names, the default tenant, refusals."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from common.settings import Settings
from common.tenants import OTHER_TENANT, Tenant, bare_key_tenant, metric_label, parse_keys


def test_named_and_bare_keys_belong_to_tenants():
    keys = parse_keys(["acme=key-a1", "acme=key-a2", "globex=key-g", "legacy-key"])
    digest = hashlib.sha256(b"legacy-key").hexdigest()[:8]
    assert keys == {"key-a1": "acme", "key-a2": "acme", "key-g": "globex", "legacy-key": f"key-{digest}"}


def test_a_single_bare_key_keeps_working_as_the_default_tenant():
    settings = Settings(api_keys="only-key")
    assert settings.api_keys == ["only-key"] and settings.tenant_names() == [bare_key_tenant("only-key")]
    # Base64 padding is part of a bare key, not a TENANT=KEY entry.
    assert parse_keys(["QWxhZGRpbjpvcGVu=="]) == {"QWxhZGRpbjpvcGVu==": bare_key_tenant("QWxhZGRpbjpvcGVu==")}


def test_a_bare_keys_tenant_can_be_named_to_give_it_a_second_key():
    name = bare_key_tenant("old-key")
    assert set(parse_keys(["old-key", f"{name}=new-key"]).values()) == {name}


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ("Acme=key", "'Acme'"),
        ("-acme=key", "'-acme'"),
        ("a" * 64 + "=key", "not a tenant name"),
        ("acme=", "no key"),
        ("acme= ", "no key"),
    ],
)
def test_a_bad_entry_fails_validation_with_a_clear_message(entry, says):
    with pytest.raises(ValidationError, match="HERALD_API_KEYS") as caught:
        Settings(api_keys=entry)
    assert says in str(caught.value)


def test_one_key_cannot_belong_to_two_tenants():
    with pytest.raises(ValidationError, match="two tenants"):
        Settings(api_keys="acme=shared,globex=shared")


def test_the_first_entrys_tenant_is_the_default_one_and_owns_runs_without_a_tenant():
    settings = Settings(api_keys="acme=k1,globex=k2,acme=k3")
    assert settings.tenant_names() == ["acme", "globex"]
    acme, globex = Tenant("acme", default=True), Tenant("globex")
    assert acme.owns(None) and acme.owns("acme") and not acme.owns("globex")
    assert not globex.owns(None) and globex.owns("globex")
    assert acme.scope == "" and globex.scope == "globex"


def test_metric_labels_name_configured_tenants_only():
    assert metric_label("acme", {"acme"}) == "acme"
    assert metric_label("someone-else", {"acme"}) == OTHER_TENANT
    assert metric_label(None, {"acme"}) == OTHER_TENANT
