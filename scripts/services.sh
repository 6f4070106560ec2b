#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1 for local development and tests.
#
#   PGPORT         PostgreSQL port (default 5432)
#   REDIS_PORT     Redis port (default 6379)
#   LETIP_DEV_DIR  where private instances live (default <repo>/.dev)
#
# A service that already answers is left alone. One that does not is started:
# PostgreSQL first through the system cluster (default port only), then as a
# private cluster under $LETIP_DEV_DIR/pg; Redis as a private daemon under
# $LETIP_DEV_DIR/redis. Missing packages are installed with apt-get when root.
# Progress goes to stderr; one status line per service goes to stdout at the end.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGPORT="${PGPORT:-5432}"
REDIS_PORT="${REDIS_PORT:-6379}"
DEV_DIR="${LETIP_DEV_DIR:-$REPO/.dev}"
WAIT_SECONDS=30

log() { echo "services: $*" >&2; }
die() { echo "services: error: $*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Newest installed PostgreSQL server binaries, or nothing.
pg_bindir() {
    ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true
}

pg_up() {
    local isready
    isready="$(command -v pg_isready || true)"
    if [ -z "$isready" ]; then
        local bindir
        bindir="$(pg_bindir)"
        [ -n "$bindir" ] && [ -x "$bindir/pg_isready" ] || return 1
        isready="$bindir/pg_isready"
    fi
    "$isready" -h 127.0.0.1 -p "$PGPORT" -t 2 -q >/dev/null 2>&1
}

redis_up() {
    command -v redis-cli >/dev/null 2>&1 || return 1
    local reply
    if command -v timeout >/dev/null 2>&1; then
        reply="$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)"
    else
        reply="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null || true)"
    fi
    [ "$reply" = "PONG" ]
}

# wait_for NAME CHECK_FUNCTION: poll for up to $WAIT_SECONDS.
wait_for() {
    local name="$1" check="$2" i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        if "$check"; then return 0; fi
        sleep 0.5
    done
    return 1
}

# Install the named Debian packages when we can; say why when we cannot.
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        die "$* not installed and apt-get is not available; install it by hand"
    fi
    if ! is_root; then
        die "$* not installed; run as root to install it, or: sudo apt-get install $*"
    fi
    log "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq "$@" >&2
}

# Run a command as the postgres user when we are root (initdb refuses root).
as_pg_owner() {
    if is_root; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

start_postgres() {
    # 1. The system cluster, which listens on the default port.
    if [ "$PGPORT" = "5432" ] && [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1; then
        local version
        version="$(ls /etc/postgresql | head -1)"
        if [ -n "$version" ]; then
            log "postgres not answering on 127.0.0.1:$PGPORT; starting system cluster $version/main"
            if pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2 2>&1 \
                && wait_for postgres pg_up; then
                PG_STATUS="started system cluster $version/main"
                return 0
            fi
            log "system cluster $version/main did not come up on 127.0.0.1:$PGPORT; trying a private cluster"
        fi
    fi

    # 2. A private cluster under $DEV_DIR/pg.
    local bindir dir
    bindir="$(pg_bindir)"
    [ -n "$bindir" ] || die "no PostgreSQL server binaries under /usr/lib/postgresql"
    mkdir -p "$DEV_DIR/pg"
    dir="$(cd "$DEV_DIR/pg" && pwd)"
    if is_root; then
        chown postgres:postgres "$dir"
    fi

    if [ ! -f "$dir/data/PG_VERSION" ]; then
        log "initialising private PostgreSQL cluster in $dir/data"
        as_pg_owner "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >&2 \
            || die "initdb failed for $dir/data"
    fi

    log "starting private PostgreSQL ($bindir) on 127.0.0.1:$PGPORT, data in $dir/data"
    if ! as_pg_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/pg.log" \
        -o "-p $PGPORT -k '$dir' -c listen_addresses=127.0.0.1" -w start >&2; then
        tail -n 20 "$dir/pg.log" >&2 2>/dev/null || true
        die "pg_ctl could not start PostgreSQL on 127.0.0.1:$PGPORT (log: $dir/pg.log)"
    fi
    if ! wait_for postgres pg_up; then
        tail -n 20 "$dir/pg.log" >&2 2>/dev/null || true
        die "PostgreSQL did not answer on 127.0.0.1:$PGPORT within ${WAIT_SECONDS}s (log: $dir/pg.log)"
    fi
    PG_STATUS="started private cluster in $dir/data"
}

start_redis() {
    local dir
    mkdir -p "$DEV_DIR/redis"
    dir="$(cd "$DEV_DIR/redis" && pwd)"
    log "starting private Redis on 127.0.0.1:$REDIS_PORT in $dir"
    if ! redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" >&2; then
        die "redis-server could not start on 127.0.0.1:$REDIS_PORT (log: $dir/redis.log)"
    fi
    if ! wait_for redis redis_up; then
        tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
        die "Redis did not answer on 127.0.0.1:$REDIS_PORT within ${WAIT_SECONDS}s (log: $dir/redis.log)"
    fi
    REDIS_STATUS="started private server in $dir"
}

PG_STATUS="already running"
REDIS_STATUS="already running"

pg_ok=0; redis_ok=0
pg_up && pg_ok=1
redis_up && redis_ok=1

# Install whatever is missing for a service that is down, in one apt-get run.
missing=()
if [ "$pg_ok" = 0 ] && [ -z "$(pg_bindir)" ]; then missing+=(postgresql); fi
if [ "$redis_ok" = 0 ] && ! command -v redis-server >/dev/null 2>&1; then missing+=(redis-server); fi
if [ "${#missing[@]}" -gt 0 ]; then
    apt_install "${missing[@]}"
    # A fresh Debian install may have started the services already.
    pg_up && pg_ok=1
    redis_up && redis_ok=1
    [ "$pg_ok" = 1 ] && [[ " ${missing[*]} " == *" postgresql "* ]] && PG_STATUS="installed and started by apt-get"
    [ "$redis_ok" = 1 ] && [[ " ${missing[*]} " == *" redis-server "* ]] && REDIS_STATUS="installed and started by apt-get"
fi

if [ "$pg_ok" = 0 ]; then start_postgres; fi
if [ "$redis_ok" = 0 ]; then start_redis; fi

echo "postgres: up on 127.0.0.1:$PGPORT ($PG_STATUS)"
echo "redis: up on 127.0.0.1:$REDIS_PORT ($REDIS_STATUS)"
