"""The [remote] section's checks, choosing the executor from the config, and ``--check`` for remote."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, RemoteConfig, load_config
from inference.backends import build_executor
from inference.executor import GpuExecutor
from inference.loader import ModelLoadError
from inference.remote import RemoteError, RemoteExecutor, read_token, run_remote_check
from inference.remote import errors as E
from tests.remote.conftest import ENV, with_remote
from tests.remote.fake_api import FakeInferenceAPI, error

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "easel.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_remote_defaults_and_environment_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'backend = "remote"\n[model]\nsource = "black-forest-labs/FLUX.1-schnell"\n'),
                      environ={"EASEL_REMOTE__CONCURRENCY": "6", "EASEL_REMOTE__PROVIDER": "fal-ai"})
    assert cfg.backend == "remote"
    assert (cfg.remote.provider, cfg.remote.concurrency, cfg.remote.token_env) == ("fal-ai", 6, "HF_TOKEN")
    assert cfg.remote.timeout_s == 120.0 and cfg.remote.retries == 3 and cfg.remote.base_url == ""


def test_the_shipped_example_works_for_both_backends(tmp_path: Path) -> None:
    text = (ROOT / "easel.example.toml").read_text(encoding="utf-8")
    assert load_config(ROOT / "easel.example.toml", environ={}).backend == "local"
    assert 'backend = "local"' in text
    cfg = load_config(write(tmp_path, text.replace('backend = "local"', 'backend = "remote"')), environ={})
    assert cfg.backend == "remote" and cfg.remote.provider == "auto" and cfg.remote.token_env == "HF_TOKEN"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('backend = "cloud"\n', "backend: 'cloud' is not one of local, remote"),
        ('[remote]\nprovider = "Fal AI"\n', "remote.provider: 'Fal AI' is not a provider name"),
        ('[remote]\nbase_url = "ftp://x"\n', "remote.base_url: 'ftp://x' must start with http://"),
        ('[remote]\ntoken_env = "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"\n', "not the token itself"),
        ('[remote]\ntoken_env = "MY TOKEN"\n', "remote.token_env: must be the NAME"),
        ('[remote]\ntimeout_s = 0\n', "remote.timeout_s: 0 must be above 0"),
        ('[remote]\nretries = 11\n', "remote.retries: 11 must be between 0 and 10"),
        ('[remote]\nconcurrency = 0\n', "remote.concurrency: 0 must be between 1 and 32"),
        ('[remote]\nbackoff_s = 5\nmax_wait_s = 2\n', "remote.max_wait_s: 2 must be at least remote.backoff_s"),
        ('[remote]\nbackoff_s = -1\n', "remote.backoff_s: -1 must be between 0 and 600"),
        ('[remote]\nconcurency = 2\n', "remote.concurency: unknown key in [remote]"),
        ('backend = "remote"\n[model]\nsource = "./models/my.safetensors"\n',
         "model.source: the remote backend needs a hub id like 'org/name'"),
        ('backend = "remote"\n[[model.loras]]\nname = "x"\nsource = "a/b"\n', "model.loras: only the local backend"),
        ('backend = "remote"\n[model]\ninpaint_source = "a/b"\n', "model.inpaint_source: only the local backend"),
        ('backend = "remote"\n[model]\nsafety_checker = true\n', "model.safety_checker: the local NSFW classifier"),
        ('backend = "remote"\n[remote]\nbase_url = "http://gpu-box:8080"\n[[models]]\nsource = "a/b"\n',
         "remote.base_url: one endpoint serves one model"),
    ],
)
def test_bad_remote_settings_name_the_key_and_the_reason(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert expected in str(info.value)


def test_with_an_endpoint_the_model_source_is_only_a_label(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'backend = "remote"\n[model]\nsource = "my-endpoint"\n'
                                      '[remote]\nbase_url = "https://x.endpoints.huggingface.cloud"\n'), environ={})
    assert cfg.model.display_name == "my-endpoint"


def test_the_config_chooses_the_executor(config: Any) -> None:
    remote = build_executor(config)
    local = build_executor(config.__class__(backend="local"))
    try:
        assert isinstance(remote, RemoteExecutor) and isinstance(local, GpuExecutor)
    finally:
        remote.shutdown()
        local.shutdown()


def test_check_makes_one_small_image_through_the_service(config: Any, api: FakeInferenceAPI) -> None:
    report = run_remote_check(config, environ=ENV)
    assert report.image_size == (64, 64) and report.steps == 2 and report.token_present
    assert report.where == f"remote:{api.url.split('/')[2]}" and report.model == "sdxl-turbo"
    assert api.seen[0].payload["inputs"] == "a lighthouse on a cliff at sunset"


def test_check_reports_what_the_service_said(config: Any, api: FakeInferenceAPI) -> None:
    api.expect(error(404, "Model not found"))
    with pytest.raises(RemoteError, match="does not offer the model sdxl-turbo"):
        run_remote_check(config, environ=ENV)
    with pytest.raises(RemoteError) as info:
        run_remote_check(config, environ={"HF_TOKEN": "hf_nope"})
    assert str(info.value) == E.TOKEN_REFUSED


def test_check_names_a_missing_token(config: Any) -> None:
    with pytest.raises(ModelLoadError, match="HF_TOKEN is not set"):
        run_remote_check(with_remote(config, base_url=""), environ={})


def test_the_access_token_comes_from_the_environment_or_dotenv(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("MY_HF", raising=False)
    remote = RemoteConfig(token_env="MY_HF")
    assert read_token(remote) is None
    (tmp_path / ".env").write_text("DISCORD_TOKEN=abc\nexport MY_HF='hf_from_dotenv'\n", encoding="utf-8")
    assert read_token(remote) == "hf_from_dotenv"
    monkeypatch.setenv("MY_HF", "hf_from_env")
    assert read_token(remote) == "hf_from_env"
    assert read_token(remote, {}) is None  # an explicit mapping is all there is
