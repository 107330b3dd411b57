"""`stack up | down | status` over the three services, in dependency order."""

from __future__ import annotations

import logging

from fieldstream.config.settings import Settings
from fieldstream.errors import StackError
from fieldstream.stack.kafka import KafkaService
from fieldstream.stack.postgres import PostgresService
from fieldstream.stack.registry import RegistryService
from fieldstream.stack.service import ServiceStatus, StackService

log = logging.getLogger(__name__)


def services(settings: Settings) -> list[StackService]:
    """The services in start order: the registry stores its schemas in PostgreSQL."""
    password = settings.pg.password.get_secret_value()
    return [
        PostgresService(settings.stack, password=password),
        KafkaService(settings.stack),
        RegistryService(settings.stack, pg_password=password, compatibility=settings.registry.compatibility),
    ]


def up(settings: Settings) -> list[ServiceStatus]:
    settings.stack.data_dir.mkdir(parents=True, exist_ok=True)
    for service in services(settings):
        log.info("stack: starting %s", service.name)
        try:
            service.up()
        except StackError:
            raise
        except Exception as e:  # noqa: BLE001 - name the service whatever went wrong
            raise StackError(f"{service.name}: {e}") from e
        log.info("stack: %s is up", service.name)
    return status(settings)


def down(settings: Settings) -> list[str]:
    stopped = []
    for service in reversed(services(settings)):
        if service.down():
            stopped.append(service.name)
    return stopped


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in services(settings)]
