#!/bin/sh
# Register Herald's custom search attributes (common/models.py SEARCH_ATTRIBUTES) in the
# namespace, once Temporal serves it. Idempotent: attributes that exist are left alone.
# Runs in the temporalio/admin-tools image (the `temporal` CLI) as the second step of the
# `temporal-namespace` service of docker-compose.yml, after deploy/temporal-create-namespace.sh;
# against any other cluster too (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE; the namespace must exist).
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
ATTRIBUTES="HeraldJobType HeraldStatus HeraldUser HeraldTenant"   # all of type Keyword
TRIES=90

cli() {
    temporal "$@" --address "$ADDRESS" --namespace "$NAMESPACE"
}

# Wait for the namespace: docker compose creates it just before, elsewhere it may come later.
n=0
until cli operator namespace describe --output none >/dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge "$TRIES" ]; then
        echo "namespace $NAMESPACE not available at $ADDRESS after $TRIES tries" >&2
        exit 1
    fi
    echo "waiting for namespace $NAMESPACE at $ADDRESS"
    sleep 2
done

for name in $ATTRIBUTES; do
    n=0
    until cli operator search-attribute list | grep -qw "$name"; do
        n=$((n + 1))
        if [ "$n" -ge "$TRIES" ]; then
            echo "could not register search attribute $name" >&2
            exit 1
        fi
        # A failed create (e.g. a second registrar raced us) is re-checked by the list above.
        cli operator search-attribute create --name "$name" --type Keyword || sleep 2
    done
    echo "search attribute $name (Keyword) registered in namespace $NAMESPACE"
done
