"""Artifact staging on the controller.

Hosts never download anything. The controller resolves the pinned versions of
``ansible/artifacts.yml`` once (Maven with strict checksums, pip), packs each
component into a reproducible archive, records its sha256 in a manifest and keeps
everything in a cache between runs. Ansible roles read the manifest and copy the
archives to the hosts.

The Debian packages roles install through apt on real hosts (Java, Prometheus) are
staged too, when asked (``debian=True``: the local stack does not install packages):
the controller's apt resolves each component's packages with their whole dependency
closure, downloads them (apt checks every file against its signed lists), and makes
them a flat apt repository signed by a key generated once per controller. Hosts copy
it, trust that key only for it, and install from it without reaching a mirror.

A component is staged again only when its pins change (its *key* is a hash of its
specification); the project's own wheel is rebuilt only when its sources change.
Archives and wheels are byte-for-byte reproducible, so a second ``make up`` copies
nothing and Ansible reports no change.

The pins file and the project's source tree (built into the wheel the hosts install)
are arguments: the command line defaults them to the repository it runs in.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

# Reproducible archives and wheels: a fixed timestamp for every member.
_EPOCH = 315532800  # 1980-01-01, the earliest date a zip file can hold
# Inputs of the project's own wheel (pyproject's package-dir): a change in any of them
# rebuilds it. The build also reads the README (the package's long description).
_WHEEL_SOURCES = ("pyproject.toml", "evilnet", "producer", "spark", "templates")
_WHEEL_README = "README.md"

Progress = Callable[[str], None]


class StagingError(RuntimeError):
    """An artifact could not be resolved, verified or packed."""


def default_cache_dir() -> Path:
    return Path(os.environ.get("EVILNET_CACHE", Path.home() / ".cache" / "evilnet"))


@dataclass(frozen=True)
class StagedFile:
    """One staged file, as Ansible sees it in the manifest."""

    name: str  # e.g. "kafka-3.9.2-1a2b3c4d5e6f": also the install directory on hosts
    version: str
    path: str
    sha256: str


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _spec_key(spec: object) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]


def _reproducible_tar(source: Path, top: str, target: Path) -> None:
    """Pack ``source`` as ``top/…`` with sorted members, fixed owners and times."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for path in sorted(source.rglob("*")):
            info = archive.gettarinfo(str(path), arcname=f"{top}/{path.relative_to(source)}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = _EPOCH, 0, 0, "", ""
            if info.isfile():
                with path.open("rb") as handle:
                    archive.addfile(info, handle)
            else:
                archive.addfile(info)
    partial = target.with_suffix(".partial")
    with partial.open("wb") as out, gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(raw.getvalue())
    partial.replace(target)


def _run(command: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise StagingError(f"{what} failed (exit {result.returncode}):\n{tail}")


def stage_maven_component(
    name: str, version: str, artifacts: list[str], cache: Path, progress: Progress,
    only: list[str] | None = None,
) -> StagedFile:
    """Resolve ``artifacts`` with their runtime dependencies into one archive.

    ``only`` keeps just these artifact ids: a connector whose other dependencies
    the runtime it plugs into (Spark) already ships.
    """
    key = _spec_key({"artifacts": artifacts, "only": only, "format": 1})
    staged_name = f"{name}-{version}-{key}"
    archive = cache / "maven" / f"{staged_name}.tar.gz"
    if archive.exists():
        progress(f"{name} {version}: cached")
        return StagedFile(staged_name, version, str(archive), _sha256(archive))

    progress(f"{name} {version}: resolving {len(artifacts)} artifact(s) and dependencies")
    archive.parent.mkdir(parents=True, exist_ok=True)
    coordinates = []
    for artifact in artifacts:
        parts = artifact.split(":")
        if len(parts) != 3:
            raise StagingError(f"{name}: {artifact!r} is not group:artifact:version")
        coordinates.append(dict(zip(("group", "artifact", "version"), parts, strict=True)))
    pom = (
        Environment(loader=PackageLoader("evilnet.platform"), undefined=StrictUndefined)
        .get_template("pom.xml.j2")
        .render(name=name, version=version, dependencies=coordinates)
    )
    with tempfile.TemporaryDirectory(prefix=f"stage-{name}-") as work:
        workdir = Path(work)
        (workdir / "pom.xml").write_text(pom)
        # --strict-checksums: a download whose checksum does not match fails the build.
        _run(
            ["mvn", "-B", "-q", "--strict-checksums", "dependency:copy-dependencies",
             "-DincludeScope=runtime", "-DoutputDirectory=lib/lib",
             *([f"-DincludeArtifactIds={','.join(only)}"] if only else [])],
            f"maven resolution of {name}",
            cwd=workdir,
        )
        _reproducible_tar(workdir / "lib", staged_name, archive)
    return StagedFile(staged_name, version, str(archive), _sha256(archive))


@dataclass(frozen=True)
class StagedRepository(StagedFile):
    """A flat apt repository of one component: the packages a role installs from it
    (``packages``), and their dependencies."""

    packages: tuple[str, ...]


# The controller's key that signs the staged repositories (its public half goes to the
# hosts): generated on the first Debian staging, kept in the cache.
_SIGNING_DIR = "signing"
_SIGNING_UID = "EvilNet staged packages"


def _ensure_signing_key(debian: Path, progress: Progress) -> tuple[str, StagedFile]:
    """This controller's signing key (made once): its GnuPG home and public keyring."""
    home = debian / _SIGNING_DIR
    public = debian / "evilnet-staged.gpg"
    if not public.exists():
        progress("debian: generating this controller's repository signing key (once)")
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True, mode=0o700)
        _run(["gpg", "--homedir", str(home), "--batch", "--passphrase", "",
              "--quick-generate-key", f"{_SIGNING_UID} ({os.uname().nodename})",
              "ed25519", "sign", "never"], "generating the signing key")
        exported = subprocess.run(["gpg", "--homedir", str(home), "--export"],
                                  capture_output=True, check=True).stdout
        partial = public.with_suffix(".partial")
        partial.write_bytes(exported)
        partial.replace(public)
    listing = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--with-colons", "--list-secret-keys"],
        capture_output=True, text=True, check=True).stdout
    fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                       if line.startswith("fpr:"))
    return str(home), StagedFile(f"evilnet-staged-{fingerprint[-16:].lower()}", fingerprint,
                                 str(public), _sha256(public))


def _apt_get(status: Path, *args: str) -> list[str]:
    """apt-get as on a Debian host with no package installed (``status`` is empty), so
    that it resolves a component's whole closure whatever a host already holds; it
    installs nothing and takes no lock on the controller's own packages."""
    return ["apt-get", "-qq", "--no-install-recommends", "-o", f"Dir::State::status={status}",
            "-o", "Debug::NoLocking=1", *args]


def stage_debian_component(name: str, packages: list[str], cache: Path, progress: Progress
                           ) -> StagedRepository:
    """``packages`` and their dependency closure as a signed flat apt repository, packed.

    The closure is the full one (as for a host with nothing installed), not the part a
    given host lacks: the repository then serves any Debian host of the controller's
    release, whatever its base system holds. Resolved from the controller's apt lists,
    which must be of the hosts' release (Debian 12).
    """
    for tool in ("apt-get", "apt-ftparchive", "gpg"):
        if shutil.which(tool) is None:
            raise StagingError(f"{tool} is not on PATH: staging Debian packages needs a Debian "
                               "controller with apt-utils and gnupg")
    debian = cache / "debian"
    debian.mkdir(parents=True, exist_ok=True)
    gnupg_home, signing_key = _ensure_signing_key(debian, progress)
    with tempfile.TemporaryDirectory(prefix=f"stage-{name}-") as work:
        workdir = Path(work)
        status = workdir / "status"
        status.write_text("")
        resolved = subprocess.run(_apt_get(status, "install", "--print-uris", *packages),
                                  capture_output=True, text=True, check=False)
        if resolved.returncode != 0 or not resolved.stdout.strip():
            raise StagingError(
                f"apt could not resolve {' '.join(packages)} (is the controller's apt "
                f"package list current? `apt-get update`):\n{resolved.stderr.strip()}")
        # One line a package: 'URI' FILENAME SIZE HASH; a file name holds its version.
        debs = sorted(line.split()[1] for line in resolved.stdout.splitlines())
        key = _spec_key({"packages": sorted(packages), "debs": debs,
                         "signed_by": signing_key.version, "format": 1})
        staged_name = f"{name}-{key}"
        archive = debian / f"{staged_name}.tar.gz"
        version = ",".join(deb.split("_")[1] for deb in debs
                           if deb.split("_")[0] in packages)
        if archive.exists():
            progress(f"{name}: cached ({len(debs)} Debian packages)")
            return StagedRepository(staged_name, version, str(archive), _sha256(archive),
                                    tuple(packages))

        progress(f"{name}: downloading {len(debs)} Debian packages (with dependencies)")
        repository = workdir / "repository"
        (repository / "partial").mkdir(parents=True)
        _run(_apt_get(status, "install", "--download-only", "--yes",
                      "-o", f"Dir::Cache::archives={repository}", *packages),
             f"downloading the Debian packages of {name}")
        shutil.rmtree(repository / "partial")
        (repository / "lock").unlink(missing_ok=True)
        _write_apt_index(repository, gnupg_home, signing_key.version)
        _reproducible_tar(repository, staged_name, archive)
    return StagedRepository(staged_name, version, str(archive), _sha256(archive),
                            tuple(packages))


def _write_apt_index(repository: Path, gnupg_home: str, fingerprint: str) -> None:
    """Packages and a signed InRelease: a flat repository (``Suites: ./`` on hosts)."""
    index = subprocess.run(["apt-ftparchive", "packages", "."], cwd=repository,
                           capture_output=True, check=True).stdout
    (repository / "Packages").write_bytes(index)
    with (repository / "Packages.gz").open("wb") as out, \
            gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz:
        gz.write(index)
    release = subprocess.run(
        ["apt-ftparchive", "-o", f"APT::FTPArchive::Release::Origin={_SIGNING_UID}",
         "-o", "APT::FTPArchive::Release::Label=evilnet-staged", "release", "."],
        cwd=repository, capture_output=True, check=True).stdout
    (repository / "Release").write_bytes(release)
    _run(["gpg", "--homedir", gnupg_home, "--batch", "--yes", "--local-user", fingerprint,
          "--clearsign", "--output", str(repository / "InRelease"),
          str(repository / "Release")], "signing the staged repository")


def stage_debian(components: dict[str, list[str]], cache: Path, progress: Progress
                 ) -> dict[str, object]:
    """Every Debian component of the pins, and the key the hosts verify them with."""
    try:
        repositories = {
            name: asdict(stage_debian_component(name, list(packages), cache, progress))
            for name, packages in components.items()}
        _, signing_key = _ensure_signing_key(cache / "debian", progress)
    finally:
        # gpg leaves an agent running per home: stop it, staging is a one-shot command.
        home = cache / "debian" / _SIGNING_DIR
        if home.is_dir():
            subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                           capture_output=True, check=False)
    return {"signing_key": asdict(signing_key), "repositories": repositories}


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]


def stage_python(pyspark_version: str, uv_version: str, project: Path, cache: Path,
                 progress: Progress) -> dict[str, StagedFile]:
    """The wheelhouse: the wheel of ``project`` (the source tree), its dependencies,
    pyspark, and uv."""
    wheelhouse = cache / "wheelhouse"
    wheelhouse.mkdir(parents=True, exist_ok=True)

    source_key = _source_key(project)
    project_wheels = sorted(wheelhouse.glob("evilnet-*.whl"))
    stamp = wheelhouse / "evilnet.source-key"
    if not (project_wheels and stamp.exists() and stamp.read_text() == source_key):
        progress("evilnet wheel: building from the working tree")
        for old in project_wheels:
            old.unlink()
        project_wheel = build_project_wheel(project, wheelhouse)
        stamp.write_text(source_key)
    else:
        progress("evilnet wheel: cached")
        project_wheel = project_wheels[0]

    progress("python dependencies: resolving into the wheelhouse")
    _run(_pip("wheel", "-q", "-w", str(wheelhouse), "--find-links", str(wheelhouse),
              str(project_wheel)), "resolving the project's dependencies")

    pyspark = _pinned_wheel(wheelhouse, "pyspark", pyspark_version, progress)
    uv = _pinned_wheel(wheelhouse, "uv", uv_version, progress)

    runtime = pack_runtime_wheels(wheelhouse, cache, pyspark=pyspark, uv=uv)
    return {
        "runtime": runtime,
        "evilnet": StagedFile(project_wheel.name, _wheel_version(project_wheel),
                              str(project_wheel), _sha256(project_wheel)),
        "pyspark": StagedFile(pyspark.name, pyspark_version, str(pyspark), _sha256(pyspark)),
    }


def build_project_wheel(project: Path, out: Path) -> Path:
    """Build the wheel of the source tree ``project`` into ``out``; return its path.

    Reproducible (fixed timestamps), and built from a copy of the wheel's sources: an
    in-tree build would leave build/ and *.egg-info in the working tree.
    """
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(_EPOCH)}
    with tempfile.TemporaryDirectory(prefix="stage-evilnet-") as build_dir:
        copy = Path(build_dir) / "src"
        copy.mkdir()
        for name in (*_WHEEL_SOURCES, _WHEEL_README):
            source = project / name
            if source.is_dir():
                shutil.copytree(source, copy / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                shutil.copy2(source, copy / name)
        result = subprocess.run(_pip("wheel", "--no-deps", "-w", str(copy / "dist"), str(copy)),
                                capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise StagingError(f"building the evilnet wheel failed:\n{result.stderr[-2000:]}")
        (built,) = (copy / "dist").glob("evilnet-*.whl")
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(built, out / built.name))


def _pinned_wheel(wheelhouse: Path, name: str, version: str, progress: Progress) -> Path:
    """``name==version`` as one wheel in the wheelhouse, without its dependencies."""
    pattern = f"{name}-{version}-*.whl"
    if not any(wheelhouse.glob(pattern)):
        progress(f"{name} {version}: staging its wheel (once)")
        _run(_pip("wheel", "-q", "--no-deps", "-w", str(wheelhouse), f"{name}=={version}"),
             f"staging {name} {version}")
    else:
        progress(f"{name} {version}: cached")
    return sorted(wheelhouse.glob(pattern))[0]


def pack_runtime_wheels(wheelhouse: Path, cache: Path, pyspark: Path, uv: Path) -> StagedFile:
    """One archive with every wheel a host's runtime needs, and the uv that installs them.

    pyspark, large and needed on Spark hosts only, travels on its own. uv goes as its
    bare binary (the wheel's script): hosts run it, they never install it.
    Named by its content, so hosts unpack a new directory exactly when a wheel changed.
    """
    wheels = sorted(p for p in wheelhouse.glob("*.whl") if p not in (pyspark, uv))
    key = _spec_key({p.name: _sha256(p) for p in [*wheels, uv]})
    name = f"runtime-wheels-{key}"
    archive = cache / "runtime" / f"{name}.tar.gz"
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        for old in archive.parent.glob("runtime-wheels-*.tar.gz"):
            old.unlink()
        with tempfile.TemporaryDirectory(prefix="stage-runtime-") as work:
            for wheel in wheels:
                shutil.copy2(wheel, work)
            _extract_uv_binary(uv, Path(work) / "uv")
            _reproducible_tar(Path(work), name, archive)
    return StagedFile(name, key, str(archive), _sha256(archive))


def _extract_uv_binary(wheel: Path, target: Path) -> None:
    version = _wheel_version(wheel)
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(f"uv-{version}.data/scripts/uv"))
    target.chmod(0o755)


def _wheel_version(wheel: Path) -> str:
    return wheel.name.split("-")[1]


def _source_key(project: Path) -> str:
    digest = hashlib.sha256()
    for top in _WHEEL_SOURCES:
        root = project / top
        if not root.exists():
            raise StagingError(f"{project} is not the project's source tree: no {top}")
        paths: Iterable[Path] = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(project)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()


def _files_exist(debian: dict | None) -> bool:
    if not debian:
        return False
    staged = [debian["signing_key"], *debian["repositories"].values()]
    return all(Path(entry["path"]).is_file() for entry in staged)


def stage(pins_file: Path, project: Path, cache: Path | None = None,
          progress: Progress = lambda _: None, debian: bool = False) -> Path:
    """Stage everything ``pins_file`` names and the wheel of ``project``, the source
    tree; return the manifest's path.

    The Debian packages are staged only with ``debian``; without it, the manifest keeps
    those an earlier run staged (while their files are there), so a plain run does not
    take them from a bed or a site that installs them.
    """
    cache = cache or default_cache_dir()
    path = cache / "manifest.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    pins = yaml.safe_load(pins_file.read_text())
    if shutil.which("mvn") is None:
        raise StagingError("mvn is not on PATH: install Maven (make up does it through apt)")
    manifest: dict[str, object] = {"wheelhouse": str(cache / "wheelhouse")}
    maven = {}
    for name, spec in pins["maven"].items():
        maven[name] = asdict(stage_maven_component(
            name, str(spec["version"]), list(spec["artifacts"]), cache, progress,
            spec.get("only")))
    manifest["maven"] = maven
    python = pins["python"]
    staged_python = stage_python(str(python["pyspark"]), str(python["uv"]), project, cache,
                                 progress)
    manifest["python"] = {name: asdict(staged) for name, staged in staged_python.items()}
    if debian:
        manifest["debian"] = stage_debian(pins.get("debian", {}), cache, progress)
    elif _files_exist(earlier.get("debian")):
        manifest["debian"] = earlier["debian"]
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path
