"""What a new admin reads when the model does not load: a path that is not there is named as a
path, not looked up on the hub; a hub that cannot be reached is said to be unreachable, with the way
to use a local folder; and loading draws no progress bars into the log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants

import inference.loader as loader
from config import DeviceConfig, ModelConfig
from inference.loader import ModelLoadError, hub_reachable, load_model
from tests.fixtures.loopback import FileServer, closed_port_url

CPU = DeviceConfig(device="cpu")
DIFFUSERS_SAYS = "{} does not appear to have a file named model_index.json."



@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on a machine without HF_HUB_OFFLINE, but diffusers answers at once with its usual line."""
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)

    def diffusers_fails(model: ModelConfig, kind: str, source: str, *args: object) -> None:
        assert kind == "hub"
        raise OSError(DIFFUSERS_SAYS.format(source))

    monkeypatch.setattr(loader, "_load_base", diffusers_fails)
    yield


def load_error(source: str, base_dir: Path) -> str:
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelConfig(source=source), CPU, base_dir)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(("source", "what"), [
    ("models/sd15", "folder"),  # shaped like a hub id, but ./models is here
    ("./models/sd15", "folder"),
    ("../elsewhere/sd15", "folder"),
    ("models/dream.safetensors", "file"),
    ("dream.ckpt", "file"),
])
def test_a_relative_path_that_is_not_there_is_named_as_such(tmp_path: Path, source: str, what: str) -> None:
    work = tmp_path / "easel"
    (work / "models").mkdir(parents=True)
    message = load_error(source, work)
    assert f"no such {what}: {(work / source).resolve()}" in message
    assert "model_index.json" not in message


def test_a_relative_hub_shaped_path_whose_folder_is_not_there_mentions_the_folder_too(tmp_path: Path) -> None:
    message = load_error("modles/sd15", tmp_path)  # a typo: no ./modles folder, so it is tried as a hub id
    assert "HF_HUB_OFFLINE" in message and f"there is no folder {tmp_path / 'modles' / 'sd15'}" in message


def test_offline_mode_says_so_and_how_to_use_a_local_folder(tmp_path: Path) -> None:
    assert hf_constants.is_offline_mode()  # tests/conftest.py
    message = load_error("stabilityai/sd-turbo", tmp_path)
    assert message.startswith("model 'sd-turbo': stabilityai/sd-turbo is not in the Hugging Face cache and "
                              "HF_HUB_OFFLINE is set")
    assert 'model.source to a local diffusers folder such as "./models/sd-turbo"' in message
    assert "does not appear to have" not in message


def test_an_unreachable_hub_is_named_with_the_way_to_a_local_folder(tmp_path: Path, online: None,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "ENDPOINT", closed_port_url())
    message = load_error("stabilityai/sd-turbo", tmp_path)
    assert f"the Hugging Face hub ({hf_constants.ENDPOINT}) cannot be reached (no internet?)" in message
    assert "hf download stabilityai/sd-turbo --local-dir ./models/sd-turbo" in message
    assert 'set model.source = "./models/sd-turbo"' in message
    assert "does not appear to have" not in message


def test_a_reachable_hub_without_the_model_asks_about_the_id(tmp_path: Path, online: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server = FileServer()  # answers 404 to everything: the hub is there, the model is not
    server.thread.start()
    try:
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.url(""))
        message = load_error("someone/not-a-model", tmp_path)
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    assert "could not be loaded from someone/not-a-model: is the hub id right?" in message
    assert f"there is no folder {tmp_path / 'someone' / 'not-a-model'} either" in message
    assert message.endswith(DIFFUSERS_SAYS.format("someone/not-a-model"))


def test_hub_reachable_counts_any_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf_constants, "ENDPOINT", closed_port_url())
    assert hub_reachable(timeout=2) is False
    server = FileServer()
    server.thread.start()
    try:
        monkeypatch.setattr(hf_constants, "ENDPOINT", server.url("/"))
        assert hub_reachable(timeout=2) is True  # a 404 is an answer
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_loading_draws_no_progress_bars(tiny_model_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    import diffusers.utils.logging as diffusers_logging
    import huggingface_hub.utils as hub_utils
    import transformers.utils.logging as transformers_logging

    diffusers_logging.enable_progress_bar()  # as a fresh process has it
    transformers_logging.enable_progress_bar()
    hub_utils.enable_progress_bars()
    load_model(ModelConfig(source=str(tiny_model_dir), size=64, min_size=64), CPU)
    err = capfd.readouterr().err
    assert "Loading pipeline components" not in err and "it/s]" not in err
    assert not diffusers_logging.is_progress_bar_enabled()
    assert not transformers_logging.is_progress_bar_enabled()
    assert hub_utils.are_progress_bars_disabled()
