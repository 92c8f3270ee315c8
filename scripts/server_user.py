"""`make server-user NAME=... ROLE=reader|editor [EXPERIMENT=...]`: a user of the team server.

    server_user.py URL USERS_DIR NAME ROLE [EXPERIMENT]

Creates the account through MLflow's AuthServiceClient (as the admin: scripts/server.sh
sets MLFLOW_TRACKING_USERNAME/PASSWORD from the server's `credentials` file) with a
generated password, written to USERS_DIR/NAME.credentials (0600, the format of MLflow's
~/.mlflow/credentials) for the admin to hand over; the password is never printed.

Roles: reader (READ), editor (EDIT: log runs). With EXPERIMENT (e.g. `bnmodels/small`,
created if missing), the permission is on that experiment; without it, on every existing
experiment (a reader needs nothing beyond the server's default permission, READ). Any
user can create an experiment, and manages those it creates.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

ROLES = {"reader": "READ", "editor": "EDIT"}


def main(url: str, users_dir: str, name: str, role: str, experiment: str = "") -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    if role not in ROLES:
        sys.exit(f"server-user: ROLE must be reader or editor, not {role!r}")
    auth = get_app_client("basic-auth", tracking_uri=url)
    client = MlflowClient(url)
    password = secrets.token_urlsafe(18)
    try:
        auth.create_user(name, password)
    except MlflowException as e:
        sys.exit(f"server-user: cannot create user {name!r} on {url}: {e.message}")
    path = Path(users_dir) / f"{name}.credentials"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"[mlflow]\nmlflow_tracking_username = {name}\n")
        f.write(f"mlflow_tracking_password = {password}\n")
    if experiment:
        exp = client.get_experiment_by_name(experiment)
        ids = [exp.experiment_id if exp else client.create_experiment(experiment)]
    elif role == "editor":
        ids = [e.experiment_id for e in client.search_experiments(max_results=50000)]
    else:
        ids = []
    for experiment_id in ids:
        auth.grant_user_permission(name, "experiment", experiment_id, ROLES[role])
    where = f"experiment {experiment}" if experiment else f"{len(ids)} existing experiments"
    print(f"user {name}: {ROLES[role]} on {where}; credentials in {path} (give them to {name})")


if __name__ == "__main__":
    main(*sys.argv[1:])
