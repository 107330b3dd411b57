"""PostgreSQL from Debian's packages, with its own cluster under the stack's data dir."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
from pathlib import Path

from fieldstream.config.stack import StackSettings
from fieldstream.errors import StackError
from fieldstream.stack import process
from fieldstream.stack.service import ServiceStatus, stack_paths

SUPERUSER = "fieldstream"
DATABASES = ("fieldstream", "schema_registry")


def find_bindir() -> Path | None:
    """The newest PostgreSQL server bin directory Debian's packages installed."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


class PostgresService:
    name = "postgres"

    def __init__(self, settings: StackSettings, password: str = "fieldstream") -> None:
        self.settings = settings
        self.password = password
        self.root, self.log_file, _ = stack_paths(settings, self.name)
        self.data = self.root / "data"
        self.socket_dir = self.root / "run"
        # PostgreSQL refuses to run as root: run its binaries as the `postgres` user then.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.postgres_port}"

    def install(self) -> None:
        if find_bindir() is not None:
            return
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise StackError("postgres: not installed; run `sudo apt-get install -y postgresql`")
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        process.run(["apt-get", "update", "-q"], what="postgres: apt-get update", env=env)
        process.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql",
                     "postgresql-contrib"], what="postgres: apt-get install postgresql", env=env)

    def _bin(self, name: str) -> str:
        bindir = find_bindir()
        if bindir is None:
            raise StackError("postgres: server binaries not found under /usr/lib/postgresql")
        return str(bindir / name)

    def timescaledb_available(self) -> bool:
        major = Path(self._bin("postgres")).parent.parent.name
        return Path(f"/usr/share/postgresql/{major}/extension/timescaledb.control").exists()

    def _give_to_postgres_user(self, *paths: Path) -> None:
        if not self.as_user:
            return
        user = pwd.getpwnam("postgres")
        for path in paths:
            os.chown(path, user.pw_uid, user.pw_gid)
        # The server must be able to traverse every ancestor of its data directory.
        for parent in self.root.parents:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                os.chmod(parent, mode | stat.S_IXOTH)

    def _init_cluster(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.touch()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._give_to_postgres_user(self.root, self.data, self.socket_dir, self.log_file, pwfile)
        process.run(
            [*self.as_user, self._bin("initdb"), "-D", str(self.data), "-U", SUPERUSER,
             f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256",
             "-E", "UTF8", "--no-locale"],
            what="postgres: initdb",
        )
        pwfile.unlink()
        preload = "shared_preload_libraries = 'timescaledb'\n" if self.timescaledb_available() else ""
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# fieldstream local stack\n"
                f"listen_addresses = '{self.settings.host}'\n"
                f"port = {self.settings.postgres_port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
                "max_wal_size = 2GB\n"
                f"{preload}"
            )

    def _psql(self, sql: str, database: str = "postgres") -> str:
        return process.run(
            [self._bin("psql"), "-h", str(self.socket_dir), "-p", str(self.settings.postgres_port),
             "-U", SUPERUSER, "-d", database, "-tAc", sql],
            what=f"postgres: {sql}",
        ).strip()

    def answers(self) -> bool:
        if not process.port_open(self.settings.host, self.settings.postgres_port):
            return False
        try:
            return self._psql("SELECT 1") == "1"
        except StackError:
            return False

    def pid(self) -> int | None:
        return process.read_pid(self.data / "postmaster.pid")

    def up(self) -> None:
        self.install()
        self._init_cluster()
        if self.pid() is None:
            if not process.wait_port_free(self.settings.host, self.settings.postgres_port):
                raise StackError(
                    f"postgres: port {self.settings.postgres_port} is taken by another process; "
                    "set FIELDSTREAM_STACK_POSTGRES_PORT"
                )
            process.run(
                [*self.as_user, self._bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log_file),
                 "-w", "-t", str(int(self.settings.start_timeout_s)), "start"],
                what=f"postgres: start (log: {self.log_file})",
            )
        process.wait_until(self.answers, timeout_s=self.settings.start_timeout_s, what="postgres",
                           log_file=self.log_file)
        for db in DATABASES:
            if self._psql(f"SELECT 1 FROM pg_database WHERE datname = '{db}'") != "1":
                self._psql(f'CREATE DATABASE "{db}"')

    def down(self) -> bool:
        if self.pid() is None:
            return False
        process.run([*self.as_user, self._bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"],
                    what="postgres: stop")
        return True

    def version(self) -> str:
        if self.pid() is None:
            bindir = find_bindir()
            return f"{bindir.parent.name} (not running)" if bindir else "not installed"
        return self._psql("SHOW server_version")

    def status(self) -> ServiceStatus:
        pid = self.pid()
        running = pid is not None and self.answers()
        version = self.version()
        if running:
            version += " + timescaledb" if self.timescaledb_available() else " (plain, no timescaledb)"
        return ServiceStatus(self.name, self.address, running, pid, version, self.log_file)
