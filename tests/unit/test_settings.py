import pytest

from recsys_faust.settings import Settings, SettingsError, all_env_names


def test_settings_from_env_and_dotenv(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("WEB_PORT=7000\nRECSYS_BATCH_SIZE=99\nKAFKA_BROKER='kafka://a:1,kafka://b:2'\n")
    s = Settings.from_env(environ={"WEB_PORT": "7001", "RECSYS_WEIGHT_PURCHASE": "9"}, dotenv=dotenv)
    assert s.web.web_port == 7001  # the environment wins over .env
    assert s.ingest.batch_size == 99
    assert s.kafka.bootstrap_servers == ["a:1", "b:2"]
    assert s.popularity.weights.purchase == 9.0
    assert s.sink.database_url is None and not s.sink.persistence_enabled


def test_secrets_never_show_and_plain_construction_reads_no_environment(monkeypatch):
    s = Settings.from_env(environ={"KAFKA_SASL_PASSWORD": "hunter2", "RECSYS_API_TOKEN": "t0k"}, dotenv=None)
    assert "hunter2" not in repr(s) and "t0k" not in str(s.model_dump())
    assert s.secret("kafka_sasl_password") == "hunter2" and s.secret("api_token") == "t0k"
    monkeypatch.setenv("RECSYS_BATCH_SIZE", "7")
    assert Settings().ingest.batch_size == 500               # Settings(...) is exactly its arguments
    assert Settings.from_env(dotenv=None).ingest.batch_size == 7
    with pytest.raises(SettingsError, match="KAFKA_BROKER is empty"):
        Settings.from_env(environ={"KAFKA_BROKER": " , "}, dotenv=None)


def test_the_env_file_is_named_by_recsys_env_file_and_empty_reads_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("WEB_PORT=7100\n")
    (tmp_path / "other.env").write_text("WEB_PORT=7200\n")
    assert Settings.from_env(environ={}).web.web_port == 7100                       # ./.env by default
    assert Settings.from_env(environ={"RECSYS_ENV_FILE": str(tmp_path / "other.env")}).web.web_port == 7200
    assert Settings.from_env(environ={"RECSYS_ENV_FILE": ""}).web.web_port == 6066  # none read


def test_settings_errors_name_the_variable(tmp_path):
    with pytest.raises(SettingsError, match="RECSYS_BATCH_SIZE"):
        Settings.from_env(environ={"RECSYS_BATCH_SIZE": "lots"}, dotenv=tmp_path / "none")
    with pytest.raises(SettingsError, match="HOPPING"):
        Settings.from_env(environ={"RECSYS_HOPPING_STEP_S": "7"}, dotenv=tmp_path / "none")
    with pytest.raises(SettingsError, match="RECSYS_FETCH_MIN_INTERVAL_MS .* greater than or equal to 0"):
        Settings.from_env(environ={"RECSYS_FETCH_MIN_INTERVAL_MS": "-1"}, dotenv=tmp_path / "none")
    assert Settings.from_env(environ={"RECSYS_FETCH_MIN_INTERVAL_MS": "0"}, dotenv=tmp_path / "none").kafka.fetch_min_interval_ms == 0


def test_scoring_mode_and_blend_weights_are_checked(tmp_path):
    none = tmp_path / "none"
    assert Settings.from_env(environ={}, dotenv=none).scoring.mode == "process"
    assert Settings.from_env(environ={"RECSYS_SCORING": "inline"}, dotenv=none).scoring.mode == "inline"
    s = Settings.from_env(environ={"RECSYS_BLEND_TRANSITIONS_WEIGHT": "0", "RECSYS_TRANSITIONS_MAX_SUCCESSORS": "7"},
                          dotenv=none)
    assert (s.ranking.blend_als_weight, s.ranking.blend_transitions_weight, s.ranking.transitions_max_successors) == (1.0, 0.0, 7)
    with pytest.raises(SettingsError, match="BLEND"):
        Settings.from_env(environ={"RECSYS_BLEND_ALS_WEIGHT": "-1"}, dotenv=none)
    with pytest.raises(SettingsError, match="transitions_max_successors"):
        Settings.from_env(environ={"RECSYS_TRANSITIONS_MAX_SUCCESSORS": "0"}, dotenv=none)
    with pytest.raises(SettingsError, match="RECSYS_SCORING='gpu'.*process, thread, inline"):
        Settings.from_env(environ={"RECSYS_SCORING": "gpu"}, dotenv=none)
    assert Settings.from_env(environ={"RECSYS_MODEL_SHIPPING": "reference"}, dotenv=none).training.model_shipping == "reference"
    with pytest.raises(SettingsError, match="RECSYS_MODEL_SHIPPING='s3'.*auto, inline, reference"):
        Settings.from_env(environ={"RECSYS_MODEL_SHIPPING": "s3"}, dotenv=none)


def test_fields_go_into_their_section_by_name_and_unknown_ones_are_refused():
    s = Settings(batch_size=10, scoring="inline", drift_threshold=0.5)
    assert (s.ingest.batch_size, s.scoring.mode, s.drift.drift_threshold) == (10, "inline", 0.5)
    assert s.ingest.max_event_bytes == 65_536  # the rest of the section keeps its defaults
    t = s.with_overrides(batch_size=20, scoring="thread", database_url="postgresql://x")
    assert (t.ingest.batch_size, t.ingest.max_event_bytes, t.scoring.mode, t.sink.database_url) == \
        (20, 65_536, "thread", "postgresql://x")
    assert s.ingest.batch_size == 10  # frozen: the copy changed, not the original
    with pytest.raises(ValueError, match="unknown setting 'batch_sise'"):
        Settings(batch_sise=10)


def test_every_section_is_frozen_and_each_variable_sets_one_field():
    s = Settings()
    with pytest.raises(Exception):
        s.ingest.batch_size = 1  # type: ignore[misc]
    names = all_env_names()
    assert names["RECSYS_BATCH_SIZE"] == "batch_size" and names["KAFKA_BROKER"] == "broker"
    assert names["RECSYS_SCORING"] == "mode"
    assert len(names) == len(set(names))
