"""Apache Kafka in KRaft mode (one node: broker and controller), from Maven Central."""

from __future__ import annotations

import base64
import shutil
import uuid
from pathlib import Path

from fieldstream.config.stack import StackSettings
from fieldstream.errors import StackError
from fieldstream.stack import process
from fieldstream.stack.service import ServiceStatus, stack_paths

# A throwaway pom whose only job is to let Maven resolve the broker's runtime
# classpath (the kafka_2.13 artifact and its dependencies) into a directory.
POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>fieldstream.stack</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{version}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-reload4j</artifactId>
      <version>1.7.36</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J = """log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.storage=WARN
log4j.logger.kafka.log=WARN
"""


def new_cluster_id() -> str:
    """A random KRaft cluster id (base64url of a UUID), never one starting with '-': the storage
    tool would read that as an option, as Kafka's own Uuid.randomUuid() knows (1 id in 64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaService:
    name = "kafka"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.data_dir, self.log_file, self.pid_file = stack_paths(settings, self.name)
        self.lib_dir = settings.cache_dir.resolve() / f"kafka_{settings.scala_version}-{settings.kafka_version}" / "lib"

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.kafka_port}"

    # -- install ---------------------------------------------------------
    def install(self) -> None:
        marker = self.lib_dir / ".complete"
        if marker.exists():
            return
        if shutil.which("mvn") is None:
            raise StackError("kafka: Maven (mvn) is needed to fetch Apache Kafka from Maven Central")
        if shutil.which("java") is None:
            raise StackError("kafka: Java 17 is needed to run Apache Kafka")
        build = self.lib_dir.parent / "pom"
        build.mkdir(parents=True, exist_ok=True)
        (build / "pom.xml").write_text(
            POM.format(scala=self.settings.scala_version, version=self.settings.kafka_version)
        )
        process.run(
            ["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={self.lib_dir}",
             "-DincludeScope=runtime"],
            what="kafka: fetching Apache Kafka from Maven Central", cwd=build,
        )
        marker.write_text(self.settings.kafka_version + "\n")

    # -- configuration ---------------------------------------------------
    def _config_path(self) -> Path:
        s = self.settings
        path = self.data_dir / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "\n".join([
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@{s.host}:{s.kafka_controller_port}",
                f"listeners=PLAINTEXT://{s.host}:{s.kafka_port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
                f"advertised.listeners=PLAINTEXT://{s.host}:{s.kafka_port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.data_dir / 'log'}",
                "num.partitions=1",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=12",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "message.max.bytes=2097152",
                "log.retention.hours=168",
                "",
            ])
        )
        (self.data_dir / "log4j.properties").write_text(LOG4J)
        return path

    def _java(self, main: str, *args: str, heap: str | None = None) -> list[str]:
        java = shutil.which("java") or "java"
        opts = [f"-Xmx{heap}", "-Xms256m", "-XX:+UseG1GC"] if heap else ["-Xmx256m"]
        return [
            java, *opts, "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
            f"-Dkafka.logs.dir={self.log_file.parent}",
            "-cp", f"{self.lib_dir}/*", main, *args,
        ]

    def _format_storage(self, config: Path) -> None:
        if (self.data_dir / "log" / "meta.properties").exists():
            return  # formatted before: keep the data
        process.run(
            self._java("kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(config)),
            what="kafka: formatting KRaft storage",
        )

    # -- lifecycle -------------------------------------------------------
    def answers(self) -> bool:
        if not process.port_open(self.settings.host, self.settings.kafka_port):
            return False
        from confluent_kafka.admin import AdminClient

        try:
            AdminClient({"bootstrap.servers": self.address}).list_topics(timeout=2)
        except Exception:  # noqa: BLE001 - any failure means "not ready yet"
            return False
        return True

    def up(self) -> None:
        self.install()
        pid = process.read_pid(self.pid_file)
        if pid is None:
            if not process.wait_port_free(self.settings.host, self.settings.kafka_port):
                raise StackError(
                    f"kafka: port {self.settings.kafka_port} is taken by another process; "
                    "set FIELDSTREAM_STACK_KAFKA_PORT"
                )
            config = self._config_path()
            self._format_storage(config)
            pid = process.spawn(
                self._java("kafka.Kafka", str(config), heap=self.settings.kafka_heap),
                log_file=self.log_file, pid_file=self.pid_file,
            )
        process.wait_until(self.answers, timeout_s=self.settings.start_timeout_s, what="kafka",
                           log_file=self.log_file, pid=pid)

    def down(self) -> bool:
        pid = process.read_pid(self.pid_file)
        if pid is None:
            return False
        process.stop_pid(pid, timeout_s=60)
        self.pid_file.unlink(missing_ok=True)
        return True

    def version(self) -> str:
        jars = sorted(self.lib_dir.glob(f"kafka_{self.settings.scala_version}-*.jar"))
        if not jars:
            return "not installed"
        return jars[0].stem.split("-", 1)[1]

    def status(self) -> ServiceStatus:
        pid = process.read_pid(self.pid_file)
        return ServiceStatus(self.name, self.address, pid is not None and self.answers(), pid,
                             self.version(), self.log_file)
