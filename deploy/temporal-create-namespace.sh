#!/bin/sh
# Create Herald's namespace, once the Temporal server serves, with TEMPORAL_RETENTION (168h by
# default) as its retention: the second half of what temporalio/auto-setup did.
# Runs in the temporalio/admin-tools image (the `temporal` CLI) as the first step of the
# `temporal-namespace` service of docker-compose.yml; deploy/register-search-attributes.sh follows.
# Idempotent, so it runs on every `docker compose up`: an existing namespace is left as it is, its
# retention too (change that with `temporal operator namespace update --retention 720h NAMESPACE`).
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${TEMPORAL_RETENTION:-168h}"
TRIES=90
. "$(dirname "$0")/retry.sh"

serving() {
    temporal operator cluster health --address "$ADDRESS" >/dev/null 2>&1
}

exists() {
    temporal operator namespace describe --address "$ADDRESS" --namespace "$NAMESPACE" \
        --output none >/dev/null 2>&1
}

# A failed create (the server not ready yet, or another run created it meanwhile) is retried and
# re-checked by the describe.
created() {
    exists && return 0
    temporal operator namespace create --address "$ADDRESS" --namespace "$NAMESPACE" \
        --retention "$RETENTION" || return 1
    echo "namespace $NAMESPACE created (retention $RETENTION)"
    exists
}

# The server's own health check only sees its port open: wait until the frontend serves.
retry "$TRIES" "Temporal at $ADDRESS" serving
retry "$TRIES" "namespace $NAMESPACE at $ADDRESS" created
echo "namespace $NAMESPACE ready at $ADDRESS"
