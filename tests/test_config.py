from pathlib import Path

import pytest

from pony_tasks.config import ConfigError, ExecutionTarget, load_settings
from tests.helpers import run_pony


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("PONY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_point_at_embedded_database_and_local_store(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.resolved_home == (tmp_path / ".pony").resolve()
    assert settings.effective_storage_url == (tmp_path / ".pony" / "objects").resolve().as_uri()
    assert settings.execution_target is ExecutionTarget.local


def test_environment_overrides_toml_which_overrides_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pony.toml").write_text('storage_url = "s3://from-toml/x"\nlog_level = "warning"\n')
    settings = load_settings()
    assert settings.storage_url == "s3://from-toml/x"
    assert settings.log_level == "WARNING"
    monkeypatch.setenv("PONY_STORAGE_URL", "s3://from-env/y")
    assert load_settings().storage_url == "s3://from-env/y"


def test_explicit_config_file_and_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "elsewhere.toml"
    config.write_text('execution_target = "kubernetes"\ngpu_node_selector = { pool = "a100" }\n')
    monkeypatch.setenv("PONY_CONFIG", str(config))
    settings = load_settings()
    assert settings.execution_target is ExecutionTarget.kubernetes
    assert settings.gpu_node_selector == {"pool": "a100"}
    monkeypatch.setenv("PONY_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="PONY_CONFIG"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("PONY_STORAGE_URL", "ftp://host/x", "storage_url"),
        ("PONY_STORAGE_URL", "s3:///no-bucket", "storage_url"),
        ("PONY_DATABASE_URL", "mysql://root@localhost/db", "database_url"),
        ("PONY_EXECUTION_TARGET", "slurm", "execution_target"),
        ("PONY_GPU_PER_POD", "lots", "gpu_per_pod"),
        ("PONY_LOG_LEVEL", "LOUD", "log_level"),
    ],
)
def test_bad_value_names_the_setting(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert named in str(error.value) and variable in str(error.value)


def test_bad_database_url_error_does_not_echo_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PONY_DATABASE_URL", "mysql://root:hunter2@localhost/db")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "hunter2" not in str(error.value)


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pony.toml").write_text('storage_ulr = "s3://typo/x"\n')
    with pytest.raises(ConfigError, match="storage_ulr"):
        load_settings()


def test_malformed_toml_is_reported_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "pony.toml").write_text("storage_url = \n")
    with pytest.raises(ConfigError, match="pony.toml"):
        load_settings()


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    result = run_pony(
        "config",
        "show",
        env={
            "PONY_DATABASE_URL": "postgresql://pony:s3cret-pw@db.example:5432/pony",
            "PONY_S3_SECRET_ACCESS_KEY": "AKIA-very-secret",
            "PONY_HOME": str(tmp_path / "h"),
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "s3cret-pw" not in result.stdout and "AKIA-very-secret" not in result.stdout
    assert "database_url" in result.stdout and "********" in result.stdout


def test_cli_fails_at_start_up_on_bad_value(tmp_path: Path) -> None:
    result = run_pony("config", "show", env={"PONY_EXECUTION_TARGET": "slurm"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "PONY_EXECUTION_TARGET" in result.stderr and "Traceback" not in result.stderr
