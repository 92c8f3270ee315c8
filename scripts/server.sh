#!/usr/bin/env bash
# A team MLflow tracking server: PostgreSQL (backend store and users) + `mlflow server`
# (proxied artifacts, MLflow's basic-auth app, TLS), both owned by the project, both on
# loopback unless HOST says otherwise.
#
#   scripts/server.sh start|stop|status      (what `make server` / `make server-stop` run)
#   scripts/server.sh user NAME ROLE [EXPERIMENT]   (`make server-user`: reader|editor)
#
# Settings (environment; the Makefile passes its variables):
#   SERVER_DIR  state folder (git-ignored): pg/ the database cluster, artifacts/, logs, pids
#   HOST PORT   where mlflow listens (127.0.0.1:5000)
#   PG_PORT     where PostgreSQL listens, on 127.0.0.1 only (5433)
#   PG_BIN      PostgreSQL 15 binaries (/usr/lib/postgresql/15/bin)
#   MLFLOW      the mlflow command (.venv/bin/mlflow)
#   WORKERS     mlflow server worker processes (2)
#   CERT KEY    the TLS certificate and key (PEM); unset: a self-signed pair made at first
#               start in $SERVER_DIR/tls/ for localhost, 127.0.0.1, HOST and this host's names
#   ALLOWED_HOSTS  the Host headers mlflow answers (default: those names, with PORT)
#   DEFAULT_PERMISSION  what a user may do on an experiment nobody granted them (READ)
#   AUTH TLS    on (default) or off; off only with a loopback HOST
#
# Secrets, generated at first start, each a 0600 file in SERVER_DIR: `credentials` (the
# MLflow admin, in the format of MLflow's ~/.mlflow/credentials), `pgpass` (the database's
# password, scram-sha-256, in libpq's .pgpass format: PGPASSFILE), `secret_key` (Flask's
# CSRF key). None of them ever appears on a command line.
#
# PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user on a
# cluster folder that user owns (runuser); as anyone else, as that user. The cluster
# listens on 127.0.0.1 only and asks every connection for its password (no `trust` line).
set -euo pipefail
umask 077  # every file written here (secrets, logs) is its owner's only

SERVER_DIR=${SERVER_DIR:-.server}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-5000}
PG_PORT=${PG_PORT:-5433}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
MLFLOW=${MLFLOW:-.venv/bin/mlflow}
PYTHON=${PYTHON:-$(dirname "$MLFLOW")/python}
WORKERS=${WORKERS:-2}
AUTH=${AUTH:-on}
TLS=${TLS:-on}
CERT=${CERT:-}
KEY=${KEY:-}
DEFAULT_PERMISSION=${DEFAULT_PERMISSION:-READ}
PG_USER=mlflow
PG_DB=mlflow
PG_AUTH_DB=mlflow_auth

mkdir -p "$SERVER_DIR"
chmod 755 "$SERVER_DIR"  # the postgres user reaches pg/ through it; secrets stay 0600
SERVER_DIR=$(cd "$SERVER_DIR" && pwd)
PGDATA=$SERVER_DIR/pg/data
PIDFILE=$SERVER_DIR/mlflow.pid
CREDENTIALS=$SERVER_DIR/credentials
export PGPASSFILE=$SERVER_DIR/pgpass

die() { echo "server: $*" >&2; exit 1; }

as_pg() {  # run a PostgreSQL server program as its owner
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

secret() { "$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))'; }

is_loopback() { case "$1" in 127.*|localhost|::1) return 0 ;; *) return 1 ;; esac; }

scheme() { if [ "$TLS" = on ]; then echo https; else echo http; fi; }

need_postgres() {
    [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || die "no PostgreSQL binaries in" \
        "$PG_BIN: install PostgreSQL 15 (Debian/Ubuntu: apt install postgresql; macOS:" \
        "brew install postgresql@15) or set PG_BIN to its bin folder"
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        die "running as root needs a 'postgres' user to own the database (PostgreSQL refuses root)"
    fi
}

create_db() {  # create_db NAME, once
    "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$1'" | grep -q 1 \
        || "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" "$1"
}

pg_start() {
    need_postgres
    mkdir -p "$SERVER_DIR/pg"
    chmod 700 "$SERVER_DIR/pg"
    if [ "$(id -u)" = 0 ]; then
        chown postgres "$SERVER_DIR/pg"
        # the postgres user must reach its folder through every parent
        as_pg test -x "$SERVER_DIR/pg" || die "user postgres cannot reach $SERVER_DIR/pg" \
            "(a parent folder is not searchable by others): choose another SERVER_DIR"
    fi
    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        local pw pwfile
        pw=$(secret)
        printf '127.0.0.1:*:*:%s:%s\n' "$PG_USER" "$pw" >"$PGPASSFILE"
        pwfile=$(mktemp "$SERVER_DIR/pg/pw.XXXXXX")  # read by initdb, as the postgres user
        printf '%s\n' "$pw" >"$pwfile"
        if [ "$(id -u)" = 0 ]; then chown postgres "$pwfile"; fi
        as_pg "$PG_BIN/initdb" -D "$PGDATA" -U "$PG_USER" --auth=scram-sha-256 \
            --pwfile="$pwfile" -E UTF8 --no-instructions >"$SERVER_DIR/initdb.log" 2>&1 \
            || { rm -f "$pwfile"; die "initdb failed: see $SERVER_DIR/initdb.log"; }
        rm -f "$pwfile"
    fi
    [ -f "$PGPASSFILE" ] || die "no database password in $PGPASSFILE (a cluster made" \
        "before passwords): move $SERVER_DIR away and start again"
    if as_pg grep -Eq '^[^#]*[[:space:]]trust([[:space:]]|$)' "$PGDATA/pg_hba.conf"; then
        die "$PGDATA/pg_hba.conf trusts connections without a password (a cluster made" \
            "before passwords): move $SERVER_DIR away and start again"
    fi
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$SERVER_DIR/pg/postgres.log" -w -t 60 \
            -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $SERVER_DIR/pg" start >/dev/null \
            || die "PostgreSQL did not start: see $SERVER_DIR/pg/postgres.log"
    fi
    create_db "$PG_DB"
    create_db "$PG_AUTH_DB"
}

# The names this server answers to: loopback, HOST, and, beyond loopback, this host's
# names and addresses. The self-signed certificate's subjectAltName; --allowed-hosts.
names() {
    echo localhost
    echo 127.0.0.1
    if ! is_loopback "$HOST"; then
        if [ "$HOST" != 0.0.0.0 ]; then echo "$HOST"; fi
        hostname
        hostname -f 2>/dev/null || true
        hostname -I 2>/dev/null | tr ' ' '\n' | grep -v '^$' || true
    fi
}

tls_files() {  # sets CERT and KEY: the given pair, or the self-signed pair of first start
    if [ -n "$CERT$KEY" ]; then
        [ -f "$CERT" ] && [ -f "$KEY" ] || die "CERT=$CERT and KEY=$KEY must both be files"
        return 0
    fi
    CERT=$SERVER_DIR/tls/cert.pem KEY=$SERVER_DIR/tls/key.pem
    if [ -f "$CERT" ] && [ -f "$KEY" ]; then return 0; fi
    command -v openssl >/dev/null || die "no openssl to make a self-signed certificate:" \
        "install it, or give CERT= and KEY="
    mkdir -p "$SERVER_DIR/tls"
    chmod 755 "$SERVER_DIR/tls"
    local san
    san=$(names | sort -u | while read -r n; do
        if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then echo "IP:$n"; else echo "DNS:$n"; fi
    done | paste -sd, -)
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 365 -subj "/CN=bnmodels MLflow" \
        -addext "subjectAltName=$san" -keyout "$KEY" -out "$CERT" >/dev/null 2>&1 \
        || die "openssl could not make a certificate in $SERVER_DIR/tls"
    chmod 644 "$CERT"  # public: clients copy it
}

auth_files() {  # the admin's credentials, Flask's key and MLflow's auth configuration
    if [ ! -f "$CREDENTIALS" ]; then
        printf '[mlflow]\nmlflow_tracking_username = admin\nmlflow_tracking_password = %s\n' \
            "$(secret)" >"$CREDENTIALS"
    fi
    [ -f "$SERVER_DIR/secret_key" ] || secret >"$SERVER_DIR/secret_key"
    # users and permissions in their own database on the cluster; the admin's password is
    # read from the environment at first start only (MLflow creates the admin then)
    printf '%s\n' "[mlflow]" "default_permission = $DEFAULT_PERMISSION" \
        "database_uri = postgresql+psycopg2://$PG_USER@127.0.0.1:$PG_PORT/$PG_AUTH_DB" \
        "admin_username = admin" \
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth" \
        >"$SERVER_DIR/basic_auth.ini"
}

credential() {  # credential username|password: the admin's, from $CREDENTIALS
    sed -n "s/^mlflow_tracking_$1 *= *//p" "$CREDENTIALS"
}

# A server killed a moment ago is a zombie until init reaps it, and a zombie answers kill -0:
# without the State check, `make server` right after a crash said "already running".
mlflow_running() {
    [ -f "$PIDFILE" ] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    kill -0 "$pid" 2>/dev/null || return 1
    ! grep -qs '^State:[[:space:]]*Z' "/proc/$pid/status"
}

start() {
    if [ "$AUTH$TLS" != onon ] && ! is_loopback "$HOST"; then
        die "HOST=$HOST is beyond loopback: that needs AUTH=on and TLS=on (AUTH=$AUTH TLS=$TLS)"
    fi
    pg_start
    local url
    url=$(scheme)://$HOST:$PORT
    if mlflow_running; then
        echo "MLflow server already running: $url"
        return 0
    fi
    mkdir -p "$SERVER_DIR/artifacts"
    local opts=() hosts
    hosts=$(names | sort -u | sed "s/\$/:$PORT/" | paste -sd, -)
    opts+=(--allowed-hosts "${ALLOWED_HOSTS:-$hosts}")
    if [ "$TLS" = on ]; then
        tls_files
        opts+=(--uvicorn-opts "--ssl-certfile $CERT --ssl-keyfile $KEY")
    fi
    local admin_pw="" flask_key=""
    if [ "$AUTH" = on ]; then
        auth_files
        opts+=(--app-name basic-auth)
        admin_pw=$(credential password)
        flask_key=$(cat "$SERVER_DIR/secret_key")
    fi
    # its own session (setsid), so that stop ends it and its workers as one group
    # MLflow's GenAI job runners (7 huey processes) are not used by this project: off.
    # The admin's password and Flask's key reach mlflow through its environment only.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
        MLFLOW_AUTH_CONFIG_PATH="$SERVER_DIR/basic_auth.ini" \
        MLFLOW_AUTH_ADMIN_PASSWORD="$admin_pw" \
        MLFLOW_FLASK_SERVER_SECRET_KEY="$flask_key" \
        setsid "$MLFLOW" server \
        --backend-store-uri "postgresql+psycopg2://$PG_USER@127.0.0.1:$PG_PORT/$PG_DB" \
        --artifacts-destination "$SERVER_DIR/artifacts" \
        --host "$HOST" --port "$PORT" --workers "$WORKERS" "${opts[@]}" \
        >"$SERVER_DIR/mlflow.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    local probe=127.0.0.1
    if is_loopback "$HOST"; then probe=$HOST; fi
    for _ in $(seq 1 120); do
        if "$PYTHON" -c "import ssl, urllib.request as u
u.urlopen('$(scheme)://$probe:$PORT/health', timeout=2,
          context=ssl._create_unverified_context())" >/dev/null 2>&1; then
            echo "MLflow server: $url (PostgreSQL on 127.0.0.1:$PG_PORT, state in $SERVER_DIR)"
            if [ "$AUTH" = on ]; then
                echo "Admin credentials: $CREDENTIALS (the format of MLflow's ~/.mlflow/credentials)"
            fi
            if [ "$TLS" = on ]; then
                echo "Certificate: $CERT (clients: MLFLOW_TRACKING_SERVER_CERT_PATH=$CERT)"
            fi
            return 0
        fi
        mlflow_running || break
        sleep 0.5
    done
    tail -20 "$SERVER_DIR/mlflow.log" >&2 || true
    stop
    die "the MLflow server did not answer on $url: see $SERVER_DIR/mlflow.log"
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

user() {  # user NAME ROLE [EXPERIMENT]: a new account; its password in users/NAME.credentials
    [ "$AUTH" = on ] || die "AUTH=off: no users"
    [ -f "$CREDENTIALS" ] || die "no $CREDENTIALS: start the server first (make server)"
    mlflow_running || die "the MLflow server is not running: make server"
    if [ "$TLS" = on ]; then tls_files; fi
    mkdir -p "$SERVER_DIR/users"
    MLFLOW_TRACKING_USERNAME=$(credential username) \
        MLFLOW_TRACKING_PASSWORD=$(credential password) \
        MLFLOW_TRACKING_SERVER_CERT_PATH=$([ "$TLS" = on ] && echo "$CERT") \
        MLFLOW_TRACKING_INSECURE_TLS=false \
        "$PYTHON" -W ignore::DeprecationWarning "$(dirname "$0")/server_user.py" \
        "$(scheme)://127.0.0.1:$PORT" "$SERVER_DIR/users" "$@"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    user) shift; user "$@" ;;
    *) die "usage: $0 start|stop|status|user NAME reader|editor [EXPERIMENT]" ;;
esac
