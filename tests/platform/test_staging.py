"""Artifact staging: verified, cached, and byte-for-byte reproducible."""

from __future__ import annotations

import hashlib
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from evilnet.platform.staging import (
    StagingError,
    pack_runtime_wheels,
    stage_debian,
    stage_maven_component,
)

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


# Debian packages: a small package with dependencies of its own, resolved by the
# controller's apt (its package lists must be current) into a signed flat repository.
DEBIAN_PACKAGE = "libjs-sphinxdoc"  # depends on libjs-jquery and libjs-underscore


def _apt_on_the_repository(tmp_path: Path, repository: Path, keyring: str) -> str:
    """What an apt whose only source is ``repository`` (as the staged_packages role
    writes it) offers for DEBIAN_PACKAGE, after an update that checks the signature."""
    state = tmp_path / "apt"
    (state / "lists" / "partial").mkdir(parents=True)
    (state / "sources").mkdir()
    (state / "sources" / "staged.sources").write_text(
        f"Types: deb\nURIs: file:{repository}\nSuites: ./\nSigned-By: {keyring}\n")
    options = ["-o", f"Dir::Etc::SourceParts={state / 'sources'}",
               "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::State::Lists={state / 'lists'}",
               "-o", f"Dir::Cache={state / 'cache'}", "-o", "Debug::NoLocking=1",
               # pytest's directories are root's alone: no download sandbox for them.
               "-o", "APT::Sandbox::User=root"]
    update = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True,
                            check=False)
    said = update.stdout + update.stderr
    assert update.returncode == 0 and "W:" not in said and "E:" not in said, said
    return subprocess.run(["apt-cache", *options, "policy", DEBIAN_PACKAGE],
                          capture_output=True, text=True, check=True).stdout


def test_debian_packages_are_a_signed_apt_repository_with_their_dependencies(
        tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    staged = stage_debian(
        {"docs": [DEBIAN_PACKAGE]}, cache, lambda _: None)
    repository = staged["repositories"]["docs"]
    archive = Path(repository["path"])
    assert repository["sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert repository["packages"] == (DEBIAN_PACKAGE,)
    unpacked = tmp_path / "host"
    with tarfile.open(archive) as tar:
        tar.extractall(unpacked, filter="data")
    root = unpacked / repository["name"]
    debs = {path.name.split("_")[0] for path in root.glob("*.deb")}
    assert {DEBIAN_PACKAGE, "libjs-jquery", "libjs-underscore"} <= debs

    keyring = staged["signing_key"]["path"]
    policy = _apt_on_the_repository(tmp_path, root, keyring)
    assert f"file:{root} ./ Packages" in policy, policy

    # A repository changed after it was signed is refused.
    (root / "InRelease").write_text((root / "InRelease").read_text().replace(
        "Label: evilnet-staged", "Label: tampered"))
    with pytest.raises(AssertionError, match=r"BADSIG|not signed"):
        _apt_on_the_repository(tmp_path / "again", root, keyring)


def test_staging_debian_packages_again_uses_the_cache(tmp_path: Path) -> None:
    first = stage_debian({"docs": [DEBIAN_PACKAGE]}, tmp_path, lambda _: None)
    messages: list[str] = []
    again = stage_debian({"docs": [DEBIAN_PACKAGE]}, tmp_path, messages.append)
    assert again == first
    assert messages == ["docs: cached (3 Debian packages)"]


def test_a_package_apt_does_not_know_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StagingError, match="apt could not resolve evilnet-no-such-package"):
        stage_debian({"none": ["evilnet-no-such-package"]}, tmp_path, lambda _: None)
