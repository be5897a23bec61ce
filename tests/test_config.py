"""Configuration: defaults, TOML, environment overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import Config, ConfigError, load_config, read_token
from studio import Studio

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "easel.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_serve_a_new_admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = load_config(environ={})
    assert cfg.model.source == "stabilityai/sd-turbo"
    assert cfg.model.display_name == "sd-turbo"
    assert cfg.storage.database == "easel.db" and cfg.path(cfg.storage.database) == tmp_path / "easel.db"
    assert cfg.device.device == "auto"


def test_the_shipped_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "easel.example.toml", environ={})
    assert cfg.queue.per_user == 4 and cfg.model.safety_checker is False and cfg.storage.png_process is True


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[queue]\nper_user = 2\n")
    cfg = load_config(path, environ={"EASEL_QUEUE__PER_USER": "3", "EASEL_DEVICE__PREVIEWS": "off",
                                     "EASEL_STORAGE__PNG_PROCESS": "false"})
    assert cfg.queue.per_user == 3
    assert cfg.device.previews is False and cfg.storage.png_process is False


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("[queue]\nper_user = 'many'\n", {}, "queue.per_user: expected a whole number"),
        ("[queue]\nper_user = 0\n", {}, "queue.per_user"),
        ("[device]\ndevice = 'tpu'\n", {}, "device.device: 'tpu' is not one of"),
        ("[model]\nsource = './missing-model'\n", {}, "model.source: no such folder: {tmp}/missing-model "
         "(relative paths start at the folder of easel.toml)"),
        ("[model]\nsource = 'models/mine.safetensors'\n", {}, "model.source: no such file: {tmp}/models/mine.safetensors"),
        ("[model]\nsource = 'models/sd15'\n", {}, "model.source: no such folder: {tmp}/models/sd15"),  # ./models exists
        ("[model]\nsorce = 'x'\n", {}, "model.sorce: unknown key in [model]"),
        ("[model\n", {}, "not valid TOML"),
        ("", {"EASEL_QUEUE__MAX_BATCH": "99"}, "queue.max_batch"),
        ("[storage]\ndatabase = 'easel.toml/easel.db'\n", {},
         "storage.database: cannot create the folder {tmp}/easel.toml: {tmp}/easel.toml is a file"),
        ("[storage]\noutputs = 'easel.toml/images'\n", {}, "storage.outputs: cannot create the folder"),
        ("[model]\nsource = 'org/x'\nbackend = 'remote'\n", {},
         "model.backend: 'backend' is a top-level key, but it is written under [model]; move it to the top of "
         "the file, above the first [section]"),
        ("[remote]\nprovider = 'auto'\nbackend = 'remote'\n", {}, "remote.backend: 'backend' is a top-level key"),
        ("[model]\nsize = 100\n", {}, "model.size"),
        ("[storage]\npng_process = 3\n", {}, "storage.png_process: expected true or false"),
        ("[discord]\ndelivery_retry_s = 600\ndelivery_retry_max_s = 60\n", {}, "discord.delivery_retry_s"),
        ("[discord]\ndelivery_attempts = 0\n", {}, "discord.delivery_attempts"),
        ("[describe]\nsuggestions = 5\n", {}, "describe.suggestions: 5 must be between 1 and 4"),
        ("[describe]\ndevice = 'tpu'\n", {}, "describe.device: 'tpu' is not one of"),
    ],
)
def test_bad_values_name_the_key_and_the_reason(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    (tmp_path / "models").mkdir()
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=env)
    assert expected.format(tmp=tmp_path.resolve()) in str(info.value)


def test_a_hub_id_is_not_mistaken_for_a_path(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[model]\nsource = 'stabilityai/sd-turbo'\n"), environ={})
    assert cfg.model.source == "stabilityai/sd-turbo"


async def test_folders_for_the_database_and_outputs_are_created(tmp_path: Path, tiny_config: Config) -> None:
    text = "[storage]\ndatabase = 'data/db/easel.db'\noutputs = 'data/images'\n"
    cfg = load_config(write(tmp_path, text), environ={})
    assert not (tmp_path / "data").exists()
    studio = Studio(dataclasses.replace(tiny_config, base_dir=cfg.base_dir, storage=cfg.storage))
    await studio.start(warm_up=False)
    try:
        assert (tmp_path / "data" / "db" / "easel.db").is_file() and (tmp_path / "data" / "images").is_dir()
    finally:
        await studio.close()


def test_an_explicit_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_token_comes_from_environment_or_dotenv(tmp_path: Path) -> None:
    assert read_token({"DISCORD_TOKEN": " abc "}, dotenv=tmp_path / ".env") == "abc"
    dotenv = tmp_path / ".env"
    dotenv.write_text("# secrets\nexport DISCORD_TOKEN='from-file'\n", encoding="utf-8")
    assert read_token({}, dotenv=dotenv) == "from-file"
    with pytest.raises(ConfigError, match="DISCORD_TOKEN is not set"):
        read_token({}, dotenv=tmp_path / "missing.env")


def test_models_with_the_same_name_are_refused(tmp_path: Path) -> None:
    text = "[model]\nsource = 'org/a'\nname = 'x'\n[[models]]\nsource = 'org/b'\nname = 'x'\n"
    with pytest.raises(ConfigError, match="used by two models"):
        load_config(write(tmp_path, text), environ={})
