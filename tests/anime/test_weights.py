"""Weights: local override, atomic download into the cache, sha256 checks; members read one short
message without server paths, the admin's detail names the file and the fix; a job never downloads."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest
import torch

from inference import weights as weights_module  # the shared fetching module
from inference.anime import STYLES, AnimeStylizer, AnimeUnavailable, Generator, WeightStore
from inference.anime.weights import NOT_SET_UP, UPSTREAM
from inference.jobs import JobError
from tests.fixtures.loopback import FileServer, closed_port_url

STYLE = "paprika"



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
    AnimeStylizer(WeightStore(cache, urls={STYLE: (closed_port_url(f"/weights/{STYLE}.pt"),)}))
    assert not cache.exists()


def test_override_file_loads_strictly_into_the_stylizer(tmp_path: Path, weights_file: Path) -> None:
    store = WeightStore(tmp_path / "cache", overrides={STYLE: str(weights_file)}, urls={})
    assert store.path_for(STYLE) == weights_file
    model = AnimeStylizer(store).generator(STYLE)
    saved = torch.load(weights_file, map_location="cpu", weights_only=True)
    assert list(model.state_dict()) == list(saved)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert not (tmp_path / "cache").exists()  # an override never fills the cache


def test_missing_override_file_names_it_to_the_admin_only(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pt"
    store = WeightStore(tmp_path / "cache", overrides={STYLE: str(missing)})
    with pytest.raises(AnimeUnavailable) as err:
        store.path_for(STYLE)
    assert str(err.value) == NOT_SET_UP
    assert str(missing) in err.value.detail and "anime.weights" in err.value.detail


def test_override_with_wrong_sha256_is_refused_but_left_in_place(tmp_path: Path, weights_file: Path) -> None:
    store = WeightStore(tmp_path, overrides={STYLE: str(weights_file)}, sha256={STYLE: "0" * 64})
    with pytest.raises(AnimeUnavailable) as err:
        store.path_for(STYLE)
    assert "anime.sha256" in err.value.detail and str(weights_file) not in str(err.value)
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


def test_a_job_never_downloads_missing_weights(tmp_path: Path, file_server: FileServer, weights_file: Path) -> None:
    """The inference thread only looks on disk: no request, however often members ask."""
    file_server.files["/w.pt"] = weights_file.read_bytes()
    store = WeightStore(tmp_path / "cache", urls={STYLE: (file_server.url("/w.pt"),)})
    stylizer = AnimeStylizer(store)
    for _ in range(3):
        with pytest.raises(AnimeUnavailable) as err:
            stylizer.generator(STYLE)
        assert str(err.value) == NOT_SET_UP
        assert str(tmp_path) not in str(err.value) and str(tmp_path / "cache" / "paprika.pt") in err.value.detail
    assert file_server.hits == {}
    assert not (tmp_path / "cache").exists()


def test_refusals_are_short_and_name_the_styles_that_work(tmp_path: Path, weights_file: Path) -> None:
    empty = WeightStore(tmp_path / "cache", urls={})
    assert empty.refusal(STYLE) == NOT_SET_UP
    partial = WeightStore(tmp_path / "cache", overrides={"face_paint_512_v2": str(weights_file)}, urls={})
    assert partial.refusal("face_paint_512_v2") is None
    message = partial.refusal(STYLE)
    assert message == ("The anime style paprika is not set up on this server yet; an admin can fix it. "
                       "Ready: face_paint_512_v2.")
    assert "There is no anime style 'ghibli'" in (partial.refusal("ghibli") or "")


def test_a_refusal_logs_the_path_and_the_fix_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = WeightStore(tmp_path / "cache", urls={STYLE: ("http://example.invalid/p.pt",)})
    with caplog.at_level("WARNING", logger="inference.anime.weights"):
        for _ in range(3):
            assert store.refusal(STYLE) == NOT_SET_UP
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1
    assert str(tmp_path / "cache" / "paprika.pt") in logged[0] and "http://example.invalid/p.pt" in logged[0]
    assert "/easel anime" in logged[0] and "anime.weights" in logged[0]


def test_a_sha256_is_computed_once_per_version_of_the_file(tmp_path: Path, weights_file: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Refusals are checked on the event loop before a job is accepted: no hashing of 8 MB per request."""
    calls: list[Path] = []
    real = weights_module.sha256_of
    monkeypatch.setattr(weights_module, "sha256_of", lambda path: calls.append(path) or real(path))
    mine = tmp_path / "mine.pt"
    mine.write_bytes(weights_file.read_bytes())
    store = WeightStore(tmp_path / "cache", overrides={STYLE: str(mine)}, sha256={STYLE: sha(mine.read_bytes())})
    for _ in range(3):
        assert store.refusal(STYLE) is None
    assert len(calls) == 1
    mine.write_bytes(b"replaced by something else entirely")
    assert store.refusal(STYLE) == NOT_SET_UP
    assert len(calls) == 2


def test_offline_gives_one_clear_message_and_leaves_nothing_in_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, second = closed_port_url(f"/weights/{STYLE}.pt"), "http://127.0.0.1:9/x.pt"
    store = WeightStore(cache, urls={STYLE: (first, second)}, timeout=5)
    with pytest.raises(AnimeUnavailable) as err:
        store.fetch(STYLE)
    assert str(err.value) == NOT_SET_UP
    detail = err.value.detail
    assert detail.startswith("AnimeGAN2 style paprika: its weights could not be downloaded (no internet? ")
    assert "Connection refused" in detail and "urlopen error" not in detail
    assert detail.endswith(f"place the file at {cache / 'paprika.pt'} (from {first}) or set anime.weights")
    assert list(cache.iterdir()) == []


def test_a_404_is_a_failed_download_too(tmp_path: Path, file_server: FileServer) -> None:
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/gone.pt"),)})
    with pytest.raises(AnimeUnavailable) as err:
        store.fetch(STYLE)
    assert "could not be downloaded" in err.value.detail
    assert file_server.hits["/gone.pt"] == 1
    assert list(tmp_path.iterdir()) == []


def test_download_lands_in_the_cache_and_is_reused(tmp_path: Path, file_server: FileServer,
                                                   weights_file: Path) -> None:
    data = weights_file.read_bytes()
    file_server.files["/w.pt"] = data
    cache = tmp_path / "cache"
    store = WeightStore(cache, urls={STYLE: (file_server.url("/w.pt"),)}, sha256={STYLE: sha(data)})
    first = store.fetch(STYLE)
    assert first == cache / "paprika.pt" and first.read_bytes() == data
    assert [p.name for p in cache.iterdir()] == ["paprika.pt"]  # no temporary file left behind
    second = WeightStore(cache, urls={STYLE: (file_server.url("/w.pt"),)})
    assert second.fetch(STYLE) == first and second.path_for(STYLE) == first
    assert file_server.hits["/w.pt"] == 1
    Generator().load_state_dict(store.load_state_dict(STYLE), strict=True)


def test_next_address_is_tried_when_the_first_fails(tmp_path: Path, file_server: FileServer,
                                                    weights_file: Path) -> None:
    file_server.files["/mirror.pt"] = weights_file.read_bytes()
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/missing.pt"), file_server.url("/mirror.pt"))})
    assert store.fetch(STYLE).read_bytes() == weights_file.read_bytes()
    assert file_server.hits == {"/missing.pt": 1, "/mirror.pt": 1}


def test_downloaded_file_with_wrong_sha256_is_refused_and_removed(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/w.pt"] = b"not the weights you are looking for"
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/w.pt"),)}, sha256={STYLE: "ab" * 32})
    with pytest.raises(AnimeUnavailable) as err:
        store.fetch(STYLE)
    detail = err.value.detail
    assert "paprika.pt" in detail and "sha256" in detail and "not kept" in detail
    assert list(tmp_path.iterdir()) == []


def test_cached_file_with_wrong_sha256_is_refused_then_downloaded_again(tmp_path: Path,
                                                                         file_server: FileServer) -> None:
    good = b"good weights"
    (tmp_path / "paprika.pt").write_bytes(b"stale weights")
    file_server.files["/w.pt"] = good
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/w.pt"),)}, sha256={STYLE: sha(good)})
    with pytest.raises(AnimeUnavailable):
        store.path_for(STYLE)
    assert file_server.hits == {}
    assert store.fetch(STYLE).read_bytes() == good
    assert store.path_for(STYLE).read_bytes() == good
    assert file_server.hits["/w.pt"] == 1


@pytest.mark.parametrize("body", [b"", b"x" * 2000], ids=["empty", "too-big"])
def test_empty_or_oversized_downloads_are_refused(tmp_path: Path, file_server: FileServer, body: bytes) -> None:
    file_server.files["/w.pt"] = body
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/w.pt"),)})
    store.max_bytes = 1000
    with pytest.raises(AnimeUnavailable) as err:
        store.fetch(STYLE)
    assert "could not be downloaded" in err.value.detail
    assert list(tmp_path.iterdir()) == []


def test_a_download_past_its_deadline_is_abandoned(tmp_path: Path, file_server: FileServer) -> None:
    file_server.files["/w.pt"] = b"x" * 200_000
    store = WeightStore(tmp_path, urls={STYLE: (file_server.url("/w.pt"),)}, deadline=0)
    with pytest.raises(AnimeUnavailable) as err:
        store.fetch(STYLE)
    assert "not complete after 0 s" in err.value.detail
    assert list(tmp_path.iterdir()) == []


def test_downloads_can_be_turned_off(tmp_path: Path, file_server: FileServer, weights_file: Path) -> None:
    file_server.files["/w.pt"] = weights_file.read_bytes()
    store = WeightStore(tmp_path / "cache", urls={STYLE: (file_server.url("/w.pt"),)}, download=False)
    outcome = store.fetch_missing([STYLE])
    assert "anime.download = false" in (outcome[STYLE] or "")
    assert file_server.hits == {}


def test_fetch_missing_reports_each_style(tmp_path: Path, file_server: FileServer, weights_file: Path) -> None:
    file_server.files["/w.pt"] = weights_file.read_bytes()
    store = WeightStore(tmp_path / "cache", overrides={"face_paint_512_v2": str(weights_file)},
                        urls={STYLE: (file_server.url("/w.pt"),), "celeba_distill": (file_server.url("/gone.pt"),)})
    outcome = store.fetch_missing()
    assert outcome["face_paint_512_v2"] is None and outcome[STYLE] is None
    assert "could not be downloaded" in (outcome["celeba_distill"] or "")
    assert "no address to download it from" in (outcome["face_paint_512_v1"] or "")
    assert store.ready() == ["face_paint_512_v2", "paprika"]


def test_a_background_fetch_runs_once_off_the_callers_thread_and_the_style_then_works(
        tmp_path: Path, file_server: FileServer, weights_file: Path) -> None:
    """What start-up and /easel anime do: a stylizer that refused the style paints it afterwards,
    without being rebuilt (no restart)."""
    file_server.files["/w.pt"] = weights_file.read_bytes()
    store = WeightStore(tmp_path / "cache", urls={STYLE: (file_server.url("/w.pt"),)})
    stylizer = AnimeStylizer(store)
    with pytest.raises(AnimeUnavailable):
        stylizer.generator(STYLE)
    threads: list[str] = []
    real_fetch = store.fetch
    gate = threading.Event()

    def fetch(style: str) -> Path:
        threads.append(threading.current_thread().name)
        gate.wait(10)
        return real_fetch(style)

    store.fetch = fetch  # type: ignore[method-assign]
    assert store.fetch_in_background([STYLE]) is True
    assert store.fetch_in_background([STYLE]) is False  # one run at a time
    gate.set()
    assert store._background is not None
    store._background.join(10)
    assert threads == ["easel-anime-weights"]
    assert store.refusal(STYLE) is None
    assert stylizer.generator(STYLE) is not None
    assert file_server.hits["/w.pt"] == 1


def test_unreadable_cached_file_is_reported_and_dropped(tmp_path: Path) -> None:
    (tmp_path / "paprika.pt").write_bytes(b"\x00garbage, not a torch file")
    store = WeightStore(tmp_path, urls={})
    with pytest.raises(AnimeUnavailable) as err:
        store.load_state_dict(STYLE)
    assert "damaged" in str(err.value) and str(tmp_path) not in str(err.value)
    assert "could not be read" in err.value.detail and str(tmp_path / "paprika.pt") in err.value.detail
    assert not (tmp_path / "paprika.pt").exists()  # the next fetch downloads it afresh


def test_unreadable_override_is_reported_but_never_deleted(tmp_path: Path) -> None:
    bad = tmp_path / "mine.pt"
    bad.write_bytes(b"garbage")
    store = WeightStore(tmp_path / "cache", overrides={STYLE: str(bad)})
    with pytest.raises(AnimeUnavailable) as err:
        store.load_state_dict(STYLE)
    assert "could not be read" in err.value.detail
    assert bad.is_file()


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "note": "a training log"}, tmp_path / "paprika.pt")
    with pytest.raises(AnimeUnavailable) as err:
        WeightStore(tmp_path, urls={}).load_state_dict(STYLE)
    assert "not a state_dict" in err.value.detail
    assert not (tmp_path / "paprika.pt").exists()
