"""The local backend and its presigned URLs, below the HTTP layer."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from wardrobe.modules.storage.backend import (
    OBJECTS_PATH,
    InvalidKey,
    LocalObjectStorage,
    ObjectExists,
    ObjectNotFound,
    ObjectStorage,
    SignatureExpired,
    SignatureInvalid,
)

KEY = "uploads/7/2026/11/0123456789abcdef0123456789abcdef.png"
NOW = 1_800_000_000.0


def make_storage(root: Path, *, key: bytes = b"k" * 32, base: str = "") -> LocalObjectStorage:
    return LocalObjectStorage(root, base, key, clock=lambda: NOW)


def split(url: str) -> tuple[str, list[tuple[str, str]]]:
    """What the route sees: the key from the path, the query as decoded pairs."""
    parts = urlsplit(url)
    assert parts.path.startswith(OBJECTS_PATH)
    return parts.path[len(OBJECTS_PATH) :], parse_qsl(parts.query, keep_blank_values=True)


def test_it_is_an_object_storage(tmp_path: Path) -> None:
    storage: ObjectStorage = make_storage(tmp_path)
    assert isinstance(storage, LocalObjectStorage)


async def test_objects_are_files_and_leave_nothing_behind(tmp_path: Path) -> None:
    """The local specifics; the contract itself is tested on both backends in test_s3_backend.py."""
    storage = make_storage(tmp_path)
    await storage.put(KEY, b"abc", "image/png")
    assert (tmp_path / KEY).read_bytes() == b"abc"
    await storage.put(KEY, b"second", "image/webp")
    assert (tmp_path / KEY).read_bytes() == b"second"
    assert await storage.delete(KEY) is True
    # Nothing is left behind: no temp files, no sidecar.
    assert not (tmp_path / KEY).exists()
    assert not list((tmp_path / ".tmp").iterdir())
    assert not (tmp_path / ".meta" / KEY).exists()


async def test_put_without_overwrite_lets_exactly_one_writer_win(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    results = await asyncio.gather(
        *(storage.put(KEY, bytes([i]) * 10, "image/png", overwrite=False) for i in range(8)),
        return_exceptions=True,
    )
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1
    assert all(isinstance(r, ObjectExists) for i, r in enumerate(results) if i != winners[0])
    assert await storage.get(KEY) == bytes([winners[0]]) * 10
    assert not list((tmp_path / ".tmp").iterdir())


@pytest.mark.parametrize("failing", ["fsync", "replace"])
async def test_a_failed_write_leaves_no_trace_and_frees_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    storage = make_storage(tmp_path)
    real_replace = os.replace

    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    def replace_but_not_the_data(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(dst) == tmp_path / KEY:
            full_disk()
        real_replace(src, dst)

    monkeypatch.setattr(os, failing, full_disk if failing == "fsync" else replace_but_not_the_data)
    for overwrite in (False, True):
        with pytest.raises(OSError, match="No space"):
            await storage.put(KEY, b"abc", "image/png", overwrite=overwrite)
        assert await storage.head(KEY) is None
        assert not list((tmp_path / ".tmp").iterdir())
        assert not (tmp_path / ".meta" / KEY).exists()
    monkeypatch.undo()
    await storage.put(KEY, b"abc", "image/png", overwrite=False)
    assert await storage.get(KEY) == b"abc"


async def test_a_directory_is_not_an_object(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    await storage.put("uploads/7/a/b.png", b"x", "image/png")
    assert await storage.head("uploads/7/a") is None
    with pytest.raises(ObjectNotFound):
        await storage.get("uploads/7/a")
    assert await storage.delete("uploads/7/a") is False


@pytest.mark.parametrize("key", ["../outside.png", "/etc/passwd", "uploads/../../outside", ".meta/x", "a//b"])
async def test_bad_keys_never_reach_outside_the_root(tmp_path: Path, key: str) -> None:
    """Every operation refusing them is the contract (test_s3_backend.py); here: the file outside
    the root is neither overwritten nor deleted by the attempts."""
    storage = make_storage(tmp_path / "root")
    (tmp_path / "outside.png").write_bytes(b"secret")
    for attempt in (storage.put(key, b"x", "image/png"), storage.delete(key), storage.delete_many([key])):
        with pytest.raises(InvalidKey):
            await attempt
    assert (tmp_path / "outside.png").read_bytes() == b"secret"


def test_upload_target_round_trip(tmp_path: Path) -> None:
    storage = make_storage(tmp_path, base="https://api.example.com/")
    target = storage.upload_target(KEY, "image/png", 1234, 900)
    assert target.method == "PUT"
    assert target.headers == {"Content-Type": "image/png"}
    assert target.url.startswith(f"https://api.example.com{OBJECTS_PATH}{KEY}?")
    assert target.expires_at.timestamp() == NOW + 900
    key, query = split(target.url.removeprefix("https://api.example.com"))
    signed = storage.check_upload(key, query)
    assert (signed.content_type, signed.max_size, signed.expires_at) == ("image/png", 1234, target.expires_at)
    # Relative URLs when no public base URL is configured.
    assert make_storage(tmp_path).upload_target(KEY, "image/png", 1, 60).url.startswith(OBJECTS_PATH)


def test_signatures_are_bound_to_key_method_and_signer(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    key, query = split(storage.upload_target(KEY, "image/png", 10, 60).url)
    with pytest.raises(SignatureInvalid):
        storage.check_download(key, query)  # a PUT signature is not a GET signature
    with pytest.raises(SignatureInvalid):
        make_storage(tmp_path, key=b"another key").check_upload(key, query)
    with pytest.raises(SignatureInvalid):
        storage.check_upload(key.replace("7", "8", 1), query)
    with pytest.raises(SignatureInvalid):
        storage.check_upload(key, [*query, ("signature", dict(query)["signature"])])  # repeated
    with pytest.raises(SignatureInvalid):
        storage.check_upload(key, [p for p in query if p[0] != "signature"])
    with pytest.raises(SignatureInvalid):
        storage.check_upload("../" + key, query)
    # Unsigned extra parameters change nothing.
    assert storage.check_upload(key, [*query, ("cache", "1")]).max_size == 10


def test_expiry_is_checked_after_the_signature(tmp_path: Path) -> None:
    clock = [NOW]
    storage = LocalObjectStorage(tmp_path, "", b"k" * 32, clock=lambda: clock[0])
    key, query = split(storage.upload_target(KEY, "image/png", 10, 60).url)
    clock[0] = NOW + 59
    storage.check_upload(key, query)
    clock[0] = NOW + 60
    with pytest.raises(SignatureExpired):
        storage.check_upload(key, query)
    # A forged URL with a past expiry is "invalid", not "expired": only genuine URLs expire.
    forged = [(n, "1" if n == "expires" else v) for n, v in query]
    with pytest.raises(SignatureInvalid):
        storage.check_upload(key, forged)
    download_key, download_query = split(storage.download_url(KEY, -1, "a.png"))
    with pytest.raises(SignatureExpired):
        storage.check_download(download_key, download_query)


def test_download_url_carries_a_signed_filename(tmp_path: Path) -> None:
    storage = make_storage(tmp_path)
    key, query = split(storage.download_url(KEY, 60, "结果 1.png"))
    assert storage.check_download(key, query).filename == "结果 1.png"
    key, query = split(storage.download_url(KEY, 60))
    assert storage.check_download(key, query).filename is None
    with pytest.raises(SignatureInvalid):
        storage.check_download(key, [*query, ("filename", "evil.html")])


def test_signing_needs_a_key(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="signing key"):
        LocalObjectStorage(tmp_path, "", b"")


# --- property: any single-character change to a signed URL is refused --------------------------

_PROPERTY_STORAGE = LocalObjectStorage(Path("unused-root"), "", b"p" * 32, clock=lambda: NOW)
_UPLOAD = _PROPERTY_STORAGE.upload_target(KEY, "image/png", 4096, 900).url.removeprefix(OBJECTS_PATH)
_DOWNLOAD = _PROPERTY_STORAGE.download_url(KEY, 900, "结果 1.png").removeprefix(OBJECTS_PATH)
_CHARS = st.characters(codec="utf-8", exclude_categories=["Cs"])


def _decoded(path_and_query: str) -> tuple[str, list[tuple[str, str]]]:
    key, _, query = path_and_query.partition("?")
    return key, parse_qsl(query.partition("#")[0], keep_blank_values=True)


@given(position=st.integers(min_value=0, max_value=len(_UPLOAD) - 1), char=_CHARS)
def test_any_single_character_change_to_an_upload_url_is_refused(position: int, char: str) -> None:
    mutated = _UPLOAD[:position] + char + _UPLOAD[position + 1 :]
    key, query = _decoded(mutated)
    # A change that decodes to the very same request (none exists for our URLs, but e.g. "%2f"
    # for "%2F" would) is not a change at all.
    assume((key, query) != _decoded(_UPLOAD))
    with pytest.raises(SignatureInvalid):
        _PROPERTY_STORAGE.check_upload(key, query)


@given(position=st.integers(min_value=0, max_value=len(_DOWNLOAD) - 1), char=_CHARS)
def test_any_single_character_change_to_a_download_url_is_refused(position: int, char: str) -> None:
    mutated = _DOWNLOAD[:position] + char + _DOWNLOAD[position + 1 :]
    key, query = _decoded(mutated)
    assume((key, query) != _decoded(_DOWNLOAD))
    with pytest.raises(SignatureInvalid):
        _PROPERTY_STORAGE.check_download(key, query)


def test_the_unmutated_urls_are_accepted() -> None:
    assert _PROPERTY_STORAGE.check_upload(*_decoded(_UPLOAD)).max_size == 4096
    assert _PROPERTY_STORAGE.check_download(*_decoded(_DOWNLOAD)).filename == "结果 1.png"
