#!/bin/sh
# Create or upgrade Temporal's two PostgreSQL databases (temporal, temporal_visibility) before the
# server starts: the first half of what temporalio/auto-setup did on every start.
# Runs in the temporalio/admin-tools image (temporal-sql-tool, and the versioned schema files
# under /etc/temporal/schema) as the `temporal-schema` service of docker-compose.yml, with the
# server's own database variables: DB, DB_PORT, POSTGRES_SEEDS, POSTGRES_USER, POSTGRES_PWD
# (and DBNAME, VISIBILITY_DBNAME, as the server reads them).
# Idempotent, so it runs on every `docker compose up`: an existing database is kept, setup-schema
# leaves a versioned schema alone, and update-schema applies only the versions the database does
# not have yet (none, or a newer image's when the version in docker-compose.yml is raised).
set -eu

: "${POSTGRES_SEEDS:?set POSTGRES_SEEDS (the PostgreSQL host)}"
: "${POSTGRES_USER:?set POSTGRES_USER}"
PLUGIN="${DB:-postgres12}"
PORT="${DB_PORT:-5432}"
TEMPORAL_DB="${DBNAME:-temporal}"
VISIBILITY_DB="${VISIBILITY_DBNAME:-temporal_visibility}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12
TRIES=60
. "$(dirname "$0")/retry.sh"

case "$PLUGIN" in
    postgres12 | postgres12_pgx) ;;
    *)
        echo "DB=$PLUGIN: this script sets up PostgreSQL only (postgres12)" >&2
        exit 1
        ;;
esac

# temporal-sql-tool reads the password from SQL_PASSWORD: kept off its command line.
SQL_PASSWORD="${POSTGRES_PWD:-}"
export SQL_PASSWORD

sql() {
    temporal-sql-tool --plugin "$PLUGIN" --endpoint "$POSTGRES_SEEDS" --port "$PORT" \
        --user "$POSTGRES_USER" "$@"
}

# The postgres image reports healthy while its first-start init server (socket only) runs, and
# then restarts: retry the first connection rather than trust that check.
retry "$TRIES" "PostgreSQL at $POSTGRES_SEEDS:$PORT" sql --database "$TEMPORAL_DB" create

setup() {  # database, schema directory (as auto-setup did; a second create is a no-op)
    sql --database "$1" create
    sql --database "$1" setup-schema -v 0.0
    sql --database "$1" update-schema -d "$SCHEMA_DIR/$2/versioned"
    echo "database $1: schema up to date ($SCHEMA_DIR/$2)"
}

setup "$TEMPORAL_DB" temporal
setup "$VISIBILITY_DB" visibility
