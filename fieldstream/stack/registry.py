"""A Confluent-compatible schema registry server (AxonOps Schema Registry, built with Go).

It stores schemas in the stack's PostgreSQL, so ids survive restarts exactly as
they do with Confluent's registry and its `_schemas` topic.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request

import yaml

from fieldstream.config.stack import StackSettings
from fieldstream.errors import StackError
from fieldstream.stack import process
from fieldstream.stack.postgres import SUPERUSER
from fieldstream.stack.service import ServiceStatus, stack_paths


class RegistryService:
    name = "registry"

    def __init__(self, settings: StackSettings, pg_password: str = "fieldstream",
                 compatibility: str = "BACKWARD") -> None:
        self.settings = settings
        self.pg_password = pg_password
        self.compatibility = compatibility
        self.data_dir, self.log_file, self.pid_file = stack_paths(settings, self.name)
        self.binary = settings.cache_dir.resolve() / "bin" / f"schema-registry-{settings.registry_version}"

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.registry_port}"

    def install(self) -> None:
        if self.binary.exists():
            return
        go = shutil.which("go")
        if go is None:
            raise StackError("registry: Go is needed to build the schema registry")
        module = f"{self.settings.registry_module}@{self.settings.registry_version}"
        # Build from the module cache; `go install` would also ask the proxy for
        # the module's deprecation notice, which some proxies refuse.
        env = {"GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
        out = process.run([go, "mod", "download", "-json", module], what="registry: go mod download",
                          env=env, cwd=self.settings.cache_dir.resolve().parent)
        source = json.loads(out)["Dir"]
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.binary.with_suffix(".tmp")
        ldflags = f"-s -w -X main.version={self.settings.registry_version}"
        process.run([go, "build", "-ldflags", ldflags, "-o", str(tmp), "./cmd/schema-registry"],
                    what="registry: go build", env=env, cwd=source)
        os.replace(tmp, self.binary)

    def _config(self) -> str:
        path = self.data_dir / "config.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({
            "server": {"host": self.settings.host, "port": self.settings.registry_port},
            "storage": {
                "type": "postgresql",
                "postgresql": {
                    "host": self.settings.host, "port": self.settings.postgres_port,
                    "database": "schema_registry", "user": SUPERUSER, "password": self.pg_password,
                    "ssl_mode": "disable",
                },
            },
            "compatibility": {"default_level": self.compatibility},
            "logging": {"level": "warn", "format": "json"},
        }))
        path.chmod(0o600)
        return str(path)

    def _get(self, path: str) -> object:
        with urllib.request.urlopen(self.url + path, timeout=2) as resp:  # noqa: S310 - local http
            return json.loads(resp.read())

    def answers(self) -> bool:
        try:
            subjects = self._get("/subjects")
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return subjects is None or isinstance(subjects, list)  # an empty registry may answer `null`

    def up(self) -> None:
        self.install()
        pid = process.read_pid(self.pid_file)
        if pid is None:
            if not process.wait_port_free(self.settings.host, self.settings.registry_port):
                raise StackError(
                    f"registry: port {self.settings.registry_port} is taken by another process; "
                    "set FIELDSTREAM_STACK_REGISTRY_PORT"
                )
            pid = process.spawn([str(self.binary), "-config", self._config()],
                                log_file=self.log_file, pid_file=self.pid_file)
        process.wait_until(self.answers, timeout_s=self.settings.start_timeout_s, what="registry",
                           log_file=self.log_file, pid=pid)

    def down(self) -> bool:
        pid = process.read_pid(self.pid_file)
        if pid is None:
            return False
        process.stop_pid(pid)
        self.pid_file.unlink(missing_ok=True)
        return True

    def version(self) -> str:
        try:
            info = self._get("/v1/metadata/version")
            if isinstance(info, dict) and info.get("version") not in (None, "", "dev"):
                return f"axonops-schema-registry {info['version']}"
        except (OSError, urllib.error.URLError, ValueError):
            pass
        return f"axonops-schema-registry {self.settings.registry_version}"

    def status(self) -> ServiceStatus:
        pid = process.read_pid(self.pid_file)
        return ServiceStatus(self.name, self.url, pid is not None and self.answers(), pid,
                             self.version(), self.log_file)
