"""Artifact staging: verified, cached, and byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path

import pytest

from evilnet.platform.staging import StagingError, pack_runtime_wheels, stage_maven_component

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


def test_the_runtime_archive_holds_the_wheels_and_an_executable_uv(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for name in ("evilnet-0.1.0-py3-none-any.whl", "rich-15.0.0-py3-none-any.whl"):
        (wheelhouse / name).write_bytes(name.encode())
    pyspark = wheelhouse / "pyspark-4.2.0-py2.py3-none-any.whl"
    pyspark.write_bytes(b"large")
    uv = wheelhouse / "uv-0.13.9-py3-none-manylinux_2_17_x86_64.whl"
    with zipfile.ZipFile(uv, "w") as wheel:
        wheel.writestr("uv-0.13.9.data/scripts/uv", b"#!uv binary")
        wheel.writestr("uv-0.13.9.data/scripts/uvx", b"#!uvx binary")

    staged = pack_runtime_wheels(wheelhouse, tmp_path, pyspark=pyspark, uv=uv)

    with tarfile.open(staged.path) as archive:
        members = {member.name: member for member in archive.getmembers() if member.isfile()}
        binary = archive.extractfile(members[f"{staged.name}/uv"])
        assert binary is not None and binary.read() == b"#!uv binary"
    assert sorted(members) == [f"{staged.name}/{name}" for name in
                               ("evilnet-0.1.0-py3-none-any.whl", "rich-15.0.0-py3-none-any.whl",
                                "uv")]
    assert members[f"{staged.name}/uv"].mode & 0o111 == 0o111
    # Named by content: the same inputs give the same archive, a new wheel a new one.
    assert pack_runtime_wheels(wheelhouse, tmp_path, pyspark=pyspark, uv=uv) == staged
    (wheelhouse / "rich-15.0.0-py3-none-any.whl").write_bytes(b"patched")
    assert pack_runtime_wheels(wheelhouse, tmp_path, pyspark=pyspark, uv=uv).name != staged.name
