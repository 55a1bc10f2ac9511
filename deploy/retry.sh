# Sourced by the setup scripts beside it (deploy/*.sh, POSIX sh): a bounded retry, 2 s apart.

# retry TRIES WHAT COMMAND [ARG...]: run COMMAND until it succeeds, at most TRIES times, saying
# "waiting for WHAT" between tries; exit 1 if it never does.
retry() {
    tries=$1
    what=$2
    shift 2
    n=1
    until "$@"; do
        if [ "$n" -ge "$tries" ]; then
            echo "gave up waiting for $what after $tries tries" >&2
            exit 1
        fi
        n=$((n + 1))
        echo "waiting for $what"
        sleep 2
    done
}
