import pytest

from fieldstream.config.settings import SECTIONS, Settings, _load, all_env_names, unknown_env_names
from fieldstream.config.stack import StackSettings
from fieldstream.errors import ConfigError


def test_defaults_point_at_the_local_stack():
    s = Settings()
    stack = StackSettings()
    assert s.kafka.bootstrap_servers == f"127.0.0.1:{stack.kafka_port}"
    assert s.registry.url == f"http://127.0.0.1:{stack.registry_port}"
    assert s.pg.port == stack.postgres_port
    # Non-default ports so the local stack does not clash with services users already run.
    assert stack.kafka_port != 9092 and stack.registry_port != 8081 and stack.postgres_port != 5432


def test_every_variable_has_the_project_prefix():
    names = all_env_names()
    assert names and all(n.startswith("FIELDSTREAM_") for n in names)
    assert "FIELDSTREAM_KAFKA_BOOTSTRAP_SERVERS" in names
    assert "FIELDSTREAM_PG_PASSWORD" in names


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FIELDSTREAM_KAFKA_SECURITY_PROTOCOL", "CARRIER_PIGEON"),
        ("FIELDSTREAM_PG_PORT", "not-a-port"),
        ("FIELDSTREAM_TOPIC_PARTITIONS", "0"),
        ("FIELDSTREAM_REGISTRY_URL", "ftp://registry"),
        ("FIELDSTREAM_WORKER_STORE", "rocksdb://"),
        ("FIELDSTREAM_WORKER_ARROW_MEMORY_POOL", "tcmalloc"),
    ],
)
def test_an_invalid_value_names_its_setting(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as err:
        _load()
    assert variable in str(err.value)


def test_a_prefetch_smaller_than_a_batch_is_refused_naming_both_settings(monkeypatch):
    monkeypatch.setenv("FIELDSTREAM_WORKER_BATCH_MAX", "5000")
    monkeypatch.setenv("FIELDSTREAM_WORKER_PREFETCH_MAX", "4096")
    with pytest.raises(ConfigError) as err:
        _load()
    assert "FIELDSTREAM_WORKER_PREFETCH_MAX" in str(err.value) and "FIELDSTREAM_WORKER_BATCH_MAX" in str(err.value)


def test_env_overrides_apply(monkeypatch):
    monkeypatch.setenv("FIELDSTREAM_TOPIC_READINGS", "custom.readings")
    monkeypatch.setenv("FIELDSTREAM_WORKER_WEB_PORT", "7001")
    s = _load()
    assert s.topics.readings == "custom.readings"
    assert s.worker.web_port == 7001


def test_secrets_are_not_printed(monkeypatch):
    monkeypatch.setenv("FIELDSTREAM_PG_PASSWORD", "planted-secret-123")
    monkeypatch.setenv("FIELDSTREAM_KAFKA_SASL_PASSWORD", "planted-secret-456")
    s = _load()
    dumped = repr(s) + str(s) + s.model_dump_json()
    assert "planted-secret" not in dumped
    assert s.pg.password.get_secret_value() == "planted-secret-123"


def test_every_section_is_part_of_settings():
    assert set(SECTIONS) == set(Settings.model_fields)


def test_a_misspelt_variable_stops_startup_naming_it_and_the_setting_meant(monkeypatch):
    monkeypatch.setenv("FIELDSTREAM_WORKER_BACH_MAX", "500")
    with pytest.raises(ConfigError) as err:
        _load()
    assert "FIELDSTREAM_WORKER_BACH_MAX" in str(err.value)
    assert "did you mean FIELDSTREAM_WORKER_BATCH_MAX?" in str(err.value)


def test_only_variables_no_setting_reads_are_unknown():
    environ = {"FIELDSTREAM_WORKER_BATCH_MAX": "500", "fieldstream_pg_port": "5432", "PATH": "/bin",
               "FIELDSTREAM_NO_SUCH_THING": "1", "fieldstream_nor_this": "2"}
    assert unknown_env_names(environ) == ["FIELDSTREAM_NO_SUCH_THING", "fieldstream_nor_this"]
    assert unknown_env_names({name: "" for name in all_env_names()}) == []


def test_a_misspelt_name_in_the_dotenv_file_is_refused_too(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("FIELDSTREAM_PG_PORT=5432\nFIELDSTREAM_PG_PORTT=5433\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        _load()
    assert "FIELDSTREAM_PG_PORTT (did you mean FIELDSTREAM_PG_PORT?)" in str(err.value)
