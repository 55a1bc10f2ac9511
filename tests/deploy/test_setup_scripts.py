"""The compose stack's setup scripts (deploy/*.sh), run under sh with stand-ins for the admin-tools
image's `temporal` and `temporal-sql-tool` (and `sleep`) that fail the first tries: each waits, retries
and finishes, or gives up with exit 1 when the cluster never answers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"

# Each stand-in logs its arguments and succeeds from its Nth call of a kind on (a file counts them).
TEMPORAL = r"""#!/bin/sh
S="$STATE"
echo "$*" >> "$S/calls"
from() { c=$(cat "$S/$1" 2>/dev/null || echo 0); echo $((c + 1)) > "$S/$1"; [ "$c" -ge "$2" ]; }
case "$*" in
  "operator cluster health"*) from health "$HEALTHY_FROM" ;;
  "operator namespace describe"*) [ -f "$S/namespace" ] ;;
  "operator namespace create"*) from create 1 && touch "$S/namespace" ;;
  "operator search-attribute list"*) cat "$S/attributes" 2>/dev/null ;;
  "operator search-attribute create"*) from "attribute-$5" 1 && echo "$5" >> "$S/attributes" ;;
esac
"""
SQL_TOOL = r"""#!/bin/sh
echo "sql $*" >> "$STATE/calls"
case "$*" in
  *" create") c=$(cat "$STATE/sql" 2>/dev/null || echo 0); echo $((c + 1)) > "$STATE/sql"; [ "$c" -ge 2 ] ;;
esac
"""


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("temporal", TEMPORAL), ("temporal-sql-tool", SQL_TOOL), ("sleep", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "state").mkdir()
    return tmp_path


def run(tools: Path, *scripts: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": f"{tools / 'bin'}:/usr/bin:/bin", "STATE": str(tools / "state"), "HEALTHY_FROM": "2"}
    command = " && ".join(f"sh {DEPLOY / script}" for script in scripts)
    return subprocess.run(["sh", "-c", command], env=environment | env, capture_output=True, text=True, timeout=60)


def calls(tools: Path, prefix: str) -> int:
    return sum(line.startswith(prefix) for line in (tools / "state" / "calls").read_text().splitlines())


def test_the_namespace_and_its_search_attributes_come_after_retries(tools):
    done = run(tools, "temporal-create-namespace.sh", "register-search-attributes.sh")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("waiting for Temporal at temporal:7233") == 2
    assert "namespace default created (retention 168h)" in done.stdout
    assert calls(tools, "operator namespace create") == 2  # the first refused, then re-checked
    attributes = (tools / "state" / "attributes").read_text().split()
    assert attributes == ["HeraldJobType", "HeraldStatus", "HeraldUser", "HeraldTenant"]
    for name in attributes:
        assert calls(tools, f"operator search-attribute create --name {name} ") == 2


def test_a_second_run_changes_nothing(tools):
    assert run(tools, "temporal-create-namespace.sh", "register-search-attributes.sh").returncode == 0
    before = calls(tools, "operator namespace create"), calls(tools, "operator search-attribute create")
    again = run(tools, "temporal-create-namespace.sh", "register-search-attributes.sh")
    assert again.returncode == 0, again.stderr
    assert (calls(tools, "operator namespace create"), calls(tools, "operator search-attribute create")) == before


def test_a_cluster_that_never_serves_is_given_up_on(tools):
    failed = run(tools, "temporal-create-namespace.sh", HEALTHY_FROM="1000")
    assert failed.returncode == 1
    assert "gave up waiting for Temporal at temporal:7233 after 90 tries" in failed.stderr
    assert calls(tools, "operator cluster health") == 90


def test_the_schema_waits_for_postgresql_then_sets_up_both_databases(tools):
    done = run(tools, "temporal-setup-schema.sh", POSTGRES_SEEDS="db", POSTGRES_USER="temporal")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("waiting for PostgreSQL at db:5432") == 2
    sql = "sql --plugin postgres12 --endpoint db --port 5432 --user temporal --database"
    for database in ("temporal", "temporal_visibility"):
        assert f"database {database}: schema up to date" in done.stdout
        assert calls(tools, f"{sql} {database} update-schema") == 1
