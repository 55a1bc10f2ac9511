"""docker-compose.yml, the Dockerfile and deploy/ checked by reading them (Docker does not run here).

What would otherwise only fail on someone's first `docker compose up`: a setting the code does not
know, a required secret that compose would let through empty, a package the image lacks, a search
attribute the cluster never registers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from common.models import SEARCH_ATTRIBUTES
from common.settings import Settings
from devstack.temporal_server import DYNAMIC_CONFIG, PARTITION_KEYS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
HERALD = ("api", "worker")
# ${VAR:?message}: compose refuses to start when VAR is unset or empty.
REQUIRED = re.compile(r"^\$\{(\w+):\?")


def _environment(service: str) -> dict[str, str]:
    return {name: str(value) for name, value in SERVICES[service]["environment"].items()}


@pytest.mark.parametrize("service", HERALD)
def test_api_and_worker_run_two_replicas_by_default(service):
    assert SERVICES[service]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("service", [name for name, spec in SERVICES.items() if spec.get("restart") != "no"])
def test_every_long_running_service_has_a_healthcheck(service):
    assert SERVICES[service]["healthcheck"]["test"]


@pytest.mark.parametrize("service", HERALD)
def test_every_herald_variable_is_a_setting(service):
    fields = {f"HERALD_{name.upper()}" for name in Settings.model_fields}
    unknown = [name for name in _environment(service) if name.startswith("HERALD_") and name not in fields]
    assert not unknown, f"{service} sets variables Herald does not read: {unknown}"


@pytest.mark.parametrize("service", HERALD)
def test_secrets_are_required_and_never_defaulted(service):
    env = _environment(service)
    assert env["HERALD_DEV_MODE"] == "false"
    required = {name for name, value in env.items() if REQUIRED.match(value)}
    secrets = {"HERALD_WEBHOOK_SECRET", "HERALD_ENCRYPTION_KEY"}
    if service == "api":
        secrets |= {"HERALD_API_KEYS", "HERALD_ADMIN_TOKEN"}
    assert secrets <= required, f"{service}: {sorted(secrets - required)} must be ${{VAR:?...}}"


def test_api_and_worker_share_the_data_directory():
    # A worker writes reports; any API replica serves them.
    mounts = [set(SERVICES[service].get("volumes", [])) for service in HERALD]
    assert mounts[0] & mounts[1], "api and worker need one shared volume for .data"


def test_the_gateway_balances_the_api_port():
    nginx = (ROOT / "deploy/nginx.conf").read_text()
    port = _environment("api")["HERALD_API_PORT"]
    assert f"http://api:{port}" in nginx


def test_the_cluster_registers_every_search_attribute():
    script = (ROOT / "deploy/register-search-attributes.sh").read_text()
    registered = set(re.search(r'ATTRIBUTES="([^"]*)"', script).group(1).split())
    assert registered == set(SEARCH_ATTRIBUTES)


def test_the_server_runs_the_matching_config_herald_is_tested_with():
    # Priority (matching.useNewMatcher) and fair dispatch (matching.enableFairness), as the dev stack.
    temporal = _environment("temporal")
    mount = next(v for v in SERVICES["temporal"]["volumes"] if v.startswith("./deploy/temporal-dynamicconfig:"))
    source, target = mount.split(":")[:2]
    path = temporal["DYNAMIC_CONFIG_FILE_PATH"]
    assert path.startswith(target + "/"), f"{path} is not in the mounted {target}"
    config = yaml.safe_load((ROOT / source / path.removeprefix(target + "/")).read_text())
    # Not the partitions: compose keeps Temporal's default 4, which a deployment from before reads its
    # queued tasks from (docs/delivery.md, "Strict order", for one).
    matching = {
        key: value for key, value in DYNAMIC_CONFIG.items() if key.startswith("matching.") and key not in PARTITION_KEYS
    }
    assert {"matching.useNewMatcher", "matching.enableFairness"} <= set(matching)
    for key, value in matching.items():
        assert [str(entry["value"]).lower() for entry in config[key]] == [value], key


def _waits_for(service: str, other: str) -> str | None:
    return (SERVICES[service].get("depends_on") or {}).get(other, {}).get("condition")


def test_the_setup_containers_run_before_what_needs_them():
    # The schemas before the server; the namespace and its search attributes before the api and worker.
    assert _waits_for("temporal", "temporal-schema") == "service_completed_successfully"
    assert "temporal-setup-schema.sh" in " ".join(SERVICES["temporal-schema"]["entrypoint"])
    assert _waits_for("temporal-namespace", "temporal") == "service_healthy"
    steps = " ".join(SERVICES["temporal-namespace"]["entrypoint"])
    assert "temporal-create-namespace.sh" in steps and "register-search-attributes.sh" in steps
    for service in HERALD:
        assert _waits_for(service, "temporal-namespace") == "service_completed_successfully"
    for script in ("temporal-setup-schema.sh", "temporal-create-namespace.sh", "register-search-attributes.sh"):
        assert (ROOT / "deploy" / script).read_text().startswith("#!/bin/sh\n")


def test_the_image_holds_every_package_herald_imports():
    dockerfile = (ROOT / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, re.MULTILINE))
    packages = {
        path.name for path in ROOT.iterdir() if (path / "__init__.py").exists() and path.name not in ("tests", "bench")
    }
    assert packages <= copied, f"the Dockerfile does not COPY {sorted(packages - copied)}"
