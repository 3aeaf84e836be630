"""Artifact staging: verified, cached, and byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pytest

from evilnet.platform.staging import StagingError, stage_maven_component

SLF4J = "org.slf4j:slf4j-api:1.7.36"


def test_a_component_is_packed_with_its_jars_and_a_checked_sha256(tmp_path: Path) -> None:
    messages: list[str] = []
    staged = stage_maven_component("slf4j", "1.7.36", [SLF4J], tmp_path, messages.append)
    archive = Path(staged.path)
    assert staged.sha256 == hashlib.sha256(archive.read_bytes()).hexdigest()
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        assert {m.mtime for m in tar.getmembers()} == {315532800}
    assert f"{staged.name}/lib/slf4j-api-1.7.36.jar" in names
    assert "resolving" in messages[0]


def test_staging_again_uses_the_cache_and_rebuilding_gives_the_same_bytes(tmp_path: Path) -> None:
    first = stage_maven_component("slf4j", "1.7.36", [SLF4J], tmp_path, lambda _: None)
    messages: list[str] = []
    cached = stage_maven_component("slf4j", "1.7.36", [SLF4J], tmp_path, messages.append)
    assert cached == first
    assert messages == ["slf4j 1.7.36: cached"]

    Path(first.path).unlink()
    rebuilt = stage_maven_component("slf4j", "1.7.36", [SLF4J], tmp_path, lambda _: None)
    assert rebuilt.sha256 == first.sha256  # so a re-stage copies nothing to the hosts


def test_a_changed_pin_is_a_new_archive(tmp_path: Path) -> None:
    old = stage_maven_component("slf4j", "1.7.36", [SLF4J], tmp_path, lambda _: None)
    new = stage_maven_component("slf4j", "1.7.35", ["org.slf4j:slf4j-api:1.7.35"], tmp_path,
                                lambda _: None)
    assert new.name != old.name and new.path != old.path


def test_a_malformed_or_unknown_artifact_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="is not group:artifact:version"):
        stage_maven_component("bad", "1", ["org.slf4j:slf4j-api"], tmp_path, lambda _: None)
    with pytest.raises(StagingError, match="maven resolution of missing failed"):
        stage_maven_component("missing", "0", ["net.evilnet.nowhere:none:0.0.0"], tmp_path,
                              lambda _: None)
