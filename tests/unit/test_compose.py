"""docker-compose.yml cannot run here; check it agrees with the settings and the stack."""

from pathlib import Path

import yaml

from fieldstream.config.settings import all_env_names

ROOT = Path(__file__).resolve().parents[2]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_present():
    services = load_compose()["services"]
    for name in ("kafka", "schema-registry", "timescaledb", "prometheus", "grafana", "worker", "simulator"):
        assert name in services, name
    assert "timescale/timescaledb" in services["timescaledb"]["image"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_fieldstream_variables_are_real_settings():
    compose = load_compose()
    known = all_env_names()
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for variable in env:
            if variable.startswith("FIELDSTREAM_"):
                assert variable in known, f"{name}: {variable} is not a setting"


def test_worker_is_scalable_and_scraped():
    compose = load_compose()
    worker = compose["services"]["worker"]
    # --scale needs no fixed host port and no container_name.
    assert "ports" not in worker and "container_name" not in worker
    port = worker["environment"]["FIELDSTREAM_WORKER_WEB_PORT"]
    prometheus = yaml.safe_load((ROOT / "config/prometheus.yml").read_text())
    sd = prometheus["scrape_configs"][0]["dns_sd_configs"][0]
    assert sd["names"] == ["worker"] and str(sd["port"]) == port


def test_services_agree_on_addresses():
    env = load_compose()["services"]["worker"]["environment"]
    services = load_compose()["services"]
    assert env["FIELDSTREAM_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert env["FIELDSTREAM_REGISTRY_URL"].endswith(":8081")
    assert services["schema-registry"]["environment"]["SCHEMA_REGISTRY_LISTENERS"].endswith(":8081")
    assert env["FIELDSTREAM_PG_HOST"] == "timescaledb"
    assert env["FIELDSTREAM_PG_PASSWORD"] == services["timescaledb"]["environment"]["POSTGRES_PASSWORD"]
