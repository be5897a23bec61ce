"""Weights: local override, atomic download into the cache, sha256 checks and one clear offline message."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch

from inference.anime import STYLES, AnimeStylizer, AnimeUnavailable, Generator, WeightStore
from inference.anime.weights import UPSTREAM
from inference.jobs import JobError
from tests.anime.conftest import FileServer

STYLE = "paprika"


def closed_port_url() -> str:
    """An address on loopback where nothing listens: the connection is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/weights/{STYLE}.pt"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_four_published_styles_default_first_and_download_from_upstream() -> None:
    assert STYLES == ("face_paint_512_v2", "face_paint_512_v1", "celeba_distill", "paprika")
    store = WeightStore(Path("unused"))
    for style in STYLES:
        assert store.urls[style][0] == UPSTREAM.format(style=style)
        assert store.urls[style][0].startswith("https://github.com/bryandlee/animegan2-pytorch/")


def test_creating_a_store_and_stylizer_touches_neither_disk_nor_network(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    AnimeStylizer(WeightStore(cache, urls={STYLE: (closed_port_url(),)}))
    assert not cache.exists()


def test_override_file_loads_strictly_into_the_stylizer(tmp_path: Path, weights_file: Path) -> None:
    store = WeightStore(tmp_path / "cache", overrides={STYLE: str(weights_file)}, urls={})
    assert store.path_for(STYLE) == weights_file
    model = AnimeStylizer(store).generator(STYLE)
    saved = torch.load(weights_file, map_location="cpu", weights_only=True)
    assert list(model.state_dict()) == list(saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert not (tmp_path / "cache").exists()  # an override never fills the cache


def test_missing_override_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pt"
    store = WeightStore(tmp_path / "cache", overrides={STYLE: str(missing)})
    with pytest.raises(AnimeUnavailable, match="unavailable") as err:
        store.path_for(STYLE)
    assert str(missing) in str(err.value) and "anime.weights" in str(err.value)


def test_override_with_wrong_sha256_is_refused_but_left_in_place(tmp_path: Path, weights_file: Path) -> None:
    store = WeightStore(tmp_path, overrides={STYLE: str(weights_file)}, sha256={STYLE: "0" * 64})
    with pytest.raises(AnimeUnavailable, match="anime.sha256"):
        store.path_for(STYLE)
    assert weights_file.is_file()


def test_override_with_matching_sha256_in_capitals_is_accepted(tmp_path: Path, weights_file: Path) -> None:
    digest = sha(weights_file.read_bytes()).upper()
    store = WeightStore(tmp_path, overrides={STYLE: str(weights_file)}, sha256={STYLE: digest})
    assert store.path_for(STYLE) == weights_file


def test_unknown_style_lists_the_styles(tmp_path: Path) -> None:
    with pytest.raises(AnimeUnavailable) as err:
        WeightStore(tmp_path).path_for("ghibli")
    assert isinstance(err.value, JobError)
    assert "'ghibli'" in str(err.value) and all(style in str(err.value) for style in STYLES)


def test_offline_gives_one_clear_message_and_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    store = WeightStore(cache, urls={STYLE: (closed_port_url(), "http://127.0.0.1:9/x.pt")}, timeout=5)
    with pytest.raises(AnimeUnavailable) as err:
        store.load_state_dict(STYLE)
    assert str(err.value) == (f"The anime style 'paprika' is unavailable: its weights could not be downloaded "
                              f"(no internet?). An admin can place the file at {cache / 'paprika.pt'} "
                              "or set anime.weights.")
    assert list(cache.iterdir()) == []


def test_a_404_is_a_failed_download_too(tmp_path: Path, file_server: FileServer) -> None:
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/gone.pt"),)})
    with pytest.raises(AnimeUnavailable, match="could not be downloaded"):
        store.path_for(STYLE)
    assert file_server.hits["/gone.pt"] == 1
    assert list(tmp_path.iterdir()) == []


def test_download_lands_in_the_cache_and_is_reused(tmp_path: Path, file_server: FileServer,
                                                   weights_file: Path) -> None:
    data = weights_file.read_bytes()
    file_server.files["/w.pt"] = data
    cache = tmp_path / "cache"
    store = WeightStore(cache, urls={STYLE: (file_server.url("/w.pt"),)}, sha256={STYLE: sha(data)})
    first = store.path_for(STYLE)
    assert first == cache / "paprika.pt" and first.read_bytes() == data
    assert [p.name for p in cache.iterdir()] == ["paprika.pt"]  # no temporary file left behind
    second = WeightStore(cache, urls={STYLE: (file_server.url("/w.pt"),)}).path_for(STYLE)
    assert second == first
    assert file_server.hits["/w.pt"] == 1
    Generator().load_state_dict(store.load_state_dict(STYLE), strict=True)


def test_next_address_is_tried_when_the_first_fails(tmp_path: Path, file_server: FileServer,
                                                    weights_file: Path) -> None:
    file_server.files["/mirror.pt"] = weights_file.read_bytes()
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/missing.pt"), file_server.url("/mirror.pt"))})
    assert store.path_for(STYLE).read_bytes() == weights_file.read_bytes()
    assert file_server.hits == {"/missing.pt": 1, "/mirror.pt": 1}


def test_downloaded_file_with_wrong_sha256_is_refused_and_removed(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/w.pt"] = b"not the weights you are looking for"
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/w.pt"),)}, sha256={STYLE: "ab" * 32})
    with pytest.raises(AnimeUnavailable) as err:
        store.path_for(STYLE)
    assert "paprika.pt" in str(err.value) and "sha256" in str(err.value) and "not kept" in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_cached_file_with_wrong_sha256_is_downloaded_again(tmp_path: Path, file_server: FileServer) -> None:
    good = b"good weights"
    (tmp_path / "paprika.pt").write_bytes(b"stale weights")
    file_server.files["/w.pt"] = good
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/w.pt"),)}, sha256={STYLE: sha(good)})
    assert store.path_for(STYLE).read_bytes() == good
    assert file_server.hits["/w.pt"] == 1


@pytest.mark.parametrize("body", [b"", b"x" * 2000], ids=["empty", "too-big"])
def test_empty_or_oversized_downloads_are_refused(tmp_path: Path, file_server: FileServer, body: bytes) -> None:
    file_server.files["/w.pt"] = body
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/w.pt"),)})
    store.max_bytes = 1000
    with pytest.raises(AnimeUnavailable, match="could not be downloaded"):
        store.path_for(STYLE)
    assert list(tmp_path.iterdir()) == []


def test_unreadable_cached_file_is_reported_and_dropped(tmp_path: Path) -> None:
    (tmp_path / "paprika.pt").write_bytes(b"\x00garbage, not a torch file")
    store = WeightStore(tmp_path, urls={})
    with pytest.raises(AnimeUnavailable, match="could not be read"):
        store.load_state_dict(STYLE)
    assert not (tmp_path / "paprika.pt").exists()  # the next try downloads it afresh


def test_unreadable_override_is_reported_but_never_deleted(tmp_path: Path) -> None:
    bad = tmp_path / "mine.pt"
    bad.write_bytes(b"garbage")
    store = WeightStore(tmp_path / "cache", overrides={STYLE: str(bad)})
    with pytest.raises(AnimeUnavailable, match="could not be read"):
        store.load_state_dict(STYLE)
    assert bad.is_file()


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "note": "a training log"}, tmp_path / "paprika.pt")
    with pytest.raises(AnimeUnavailable, match="not a state_dict"):
        WeightStore(tmp_path, urls={}).load_state_dict(STYLE)
    assert not (tmp_path / "paprika.pt").exists()
