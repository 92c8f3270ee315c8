#!/usr/bin/env bash
# A team MLflow tracking server: PostgreSQL (backend store) + `mlflow server` (proxied
# artifacts), both owned by the project, both on loopback unless HOST says otherwise.
#
#   scripts/server.sh start|stop|status      (what `make server` / `make server-stop` run)
#
# Settings (environment; the Makefile passes its variables):
#   SERVER_DIR  state folder (git-ignored): pg/ the database cluster, artifacts/, logs, pids
#   HOST PORT   where mlflow listens (127.0.0.1:5000)
#   PG_PORT     where PostgreSQL listens, on 127.0.0.1 only (5433)
#   PG_BIN      PostgreSQL 15 binaries (/usr/lib/postgresql/15/bin)
#   MLFLOW      the mlflow command (.venv/bin/mlflow)
#   WORKERS     mlflow server worker processes (2)
#
# PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user on a
# cluster folder that user owns (runuser); as anyone else, as that user. The cluster
# trusts connections from 127.0.0.1 only (no password): anyone on this machine can write
# runs, nobody else can connect.
set -euo pipefail

SERVER_DIR=${SERVER_DIR:-.server}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-5000}
PG_PORT=${PG_PORT:-5433}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
MLFLOW=${MLFLOW:-.venv/bin/mlflow}
PYTHON=${PYTHON:-$(dirname "$MLFLOW")/python}
WORKERS=${WORKERS:-2}
PG_USER=mlflow
PG_DB=mlflow

mkdir -p "$SERVER_DIR"
SERVER_DIR=$(cd "$SERVER_DIR" && pwd)
PGDATA=$SERVER_DIR/pg/data
PIDFILE=$SERVER_DIR/mlflow.pid

die() { echo "server: $*" >&2; exit 1; }

as_pg() {  # run a PostgreSQL server program as its owner
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

need_postgres() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || die "no PostgreSQL binaries in" \
        "$PG_BIN: install PostgreSQL 15 (Debian/Ubuntu: apt install postgresql; macOS:" \
        "brew install postgresql@15) or set PG_BIN to its bin folder"
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        die "running as root needs a 'postgres' user to own the database (PostgreSQL refuses root)"
    fi
}

pg_start() {
    need_postgres
    mkdir -p "$SERVER_DIR/pg"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$SERVER_DIR/pg"
        # the postgres user must reach its folder through every parent
        as_pg test -x "$SERVER_DIR/pg" || die "user postgres cannot reach $SERVER_DIR/pg" \
            "(a parent folder is not searchable by others): choose another SERVER_DIR"
    fi
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PG_USER" --auth=trust -E UTF8 \
            --no-instructions >"$SERVER_DIR/initdb.log" 2>&1 \
            || die "initdb failed: see $SERVER_DIR/initdb.log"
    fi
    if as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        return 0
    fi
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$SERVER_DIR/pg/postgres.log" -w -t 60 \
        -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $SERVER_DIR/pg" start >/dev/null \
        || die "PostgreSQL did not start: see $SERVER_DIR/pg/postgres.log"
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1 \
        || "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$PG_DB"
}

mlflow_running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
    pg_start
    if mlflow_running; then
        echo "MLflow server already running: http://$HOST:$PORT"
        return 0
    fi
    mkdir -p "$SERVER_DIR/artifacts"
    # its own session (setsid), so that stop ends it and its workers as one group
    # MLflow's GenAI job runners (7 huey processes) are not used by this project: off.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$MLFLOW" server \
        --backend-store-uri "postgresql+psycopg2://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB" \
        --artifacts-destination "$SERVER_DIR/artifacts" \
        --host "$HOST" --port "$PORT" --workers "$WORKERS" \
        >"$SERVER_DIR/mlflow.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    for _ in $(seq 1 120); do
        if "$PYTHON" -c "import urllib.request as u; u.urlopen('http://$HOST:$PORT/health', timeout=2)" \
            >/dev/null 2>&1; then
            echo "MLflow server: http://$HOST:$PORT (PostgreSQL on 127.0.0.1:$PG_PORT," \
                "state in $SERVER_DIR)"
            return 0
        fi
        mlflow_running || break
        sleep 0.5
    done
    tail -20 "$SERVER_DIR/mlflow.log" >&2 || true
    stop
    die "the MLflow server did not answer on http://$HOST:$PORT: see $SERVER_DIR/mlflow.log"
}

stop() {
    if mlflow_running; then
        pid=$(cat "$PIDFILE")
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    if [ -f "$PGDATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
    then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    fi
    echo "MLflow server and PostgreSQL stopped ($SERVER_DIR)"
}

status() {
    if mlflow_running; then echo "mlflow: running (pid $(cat "$PIDFILE"))"; else echo "mlflow: stopped"; fi
    if [ -f "$PGDATA/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
    then echo "postgresql: running"; else echo "postgresql: stopped"; fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "usage: $0 start|stop|status" ;;
esac
