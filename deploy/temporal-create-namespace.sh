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

# The server's own health check only sees its port open: wait until the frontend serves.
n=0
until temporal operator cluster health --address "$ADDRESS" >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge "$TRIES" ]; then
        echo "Temporal at $ADDRESS not serving after $TRIES tries" >&2
        exit 1
    fi
    echo "waiting for Temporal at $ADDRESS"
    sleep 2
done

n=0
until temporal operator namespace describe --address "$ADDRESS" --namespace "$NAMESPACE" \
    --output none >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge "$TRIES" ]; then
        echo "could not create namespace $NAMESPACE at $ADDRESS" >&2
        exit 1
    fi
    # A failed create (the server not ready yet, or another run created it meanwhile) is
    # re-checked by the describe above.
    if temporal operator namespace create --address "$ADDRESS" --namespace "$NAMESPACE" \
        --retention "$RETENTION"; then
        echo "namespace $NAMESPACE created (retention $RETENTION)"
    else
        sleep 2
    fi
done
echo "namespace $NAMESPACE ready at $ADDRESS"
