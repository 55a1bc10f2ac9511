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
. "$(dirname "$0")/retry.sh"

cli() {
    temporal "$@" --address "$ADDRESS" --namespace "$NAMESPACE"
}

namespace_exists() {
    cli operator namespace describe --output none >/dev/null 2>&1
}

listed() {  # name
    cli operator search-attribute list | grep -qw "$1"
}

# A failed create (e.g. a second registrar raced us) is retried and re-checked by the list.
registered() {  # name
    listed "$1" && return 0
    cli operator search-attribute create --name "$1" --type Keyword || return 1
    listed "$1"
}

# Wait for the namespace: docker compose creates it just before, elsewhere it may come later.
retry "$TRIES" "namespace $NAMESPACE at $ADDRESS" namespace_exists

for name in $ATTRIBUTES; do
    retry "$TRIES" "search attribute $name in namespace $NAMESPACE" registered "$name"
    echo "search attribute $name (Keyword) registered in namespace $NAMESPACE"
done
