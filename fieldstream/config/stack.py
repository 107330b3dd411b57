"""Where and how the local stack (Kafka, schema registry, PostgreSQL) runs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from fieldstream.config.base import Section, section

# Ports are deliberately not the services' defaults so a local stack never
# clashes with a Kafka, registry or PostgreSQL the user already runs.
KAFKA_PORT = 19092
KAFKA_CONTROLLER_PORT = 19093
REGISTRY_PORT = 18081
POSTGRES_PORT = 15432


class StackSettings(Section):
    model_config = section("STACK")

    data_dir: Path = Field(Path(".stack"), description="Data, logs and pid files of the local stack")
    cache_dir: Path = Field(
        Path(".stack/cache"), description="Downloaded Kafka jars and the built registry binary"
    )
    host: str = Field("127.0.0.1", description="Interface the local services listen on")
    kafka_version: str = Field("3.9.1", pattern=r"^\d+\.\d+\.\d+$", description="Apache Kafka release")
    scala_version: str = Field("2.13", description="Scala build of the Kafka artifact")
    kafka_port: int = Field(KAFKA_PORT, ge=1, le=65535, description="Local broker's client port")
    kafka_controller_port: int = Field(KAFKA_CONTROLLER_PORT, ge=1, le=65535,
                                       description="Local broker's KRaft controller port")
    kafka_heap: str = Field("1g", pattern=r"^\d+[mg]$", description="JVM heap of the broker")
    registry_module: str = Field(
        "github.com/axonops/axonops-schema-registry", description="Go module of the registry"
    )
    registry_version: str = Field("v0.2.1", description="Registry release (a module version tag)")
    registry_port: int = Field(REGISTRY_PORT, ge=1, le=65535, description="Local registry's port")
    postgres_port: int = Field(POSTGRES_PORT, ge=1, le=65535, description="Local PostgreSQL's port")
    start_timeout_s: float = Field(90.0, gt=0, description="How long `stack up` waits for each service")
