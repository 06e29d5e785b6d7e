"""What the local broker runs on: Java 17+, and Kafka's jars resolved from Maven Central.

The jars come through `headrace/devstack/localstack/pom.xml`, resolved once into
`<cache_dir>/kafka/libs` (Maven's own cache in `<cache_dir>/m2`); a marker with
the pom's sha256 makes the next start skip Maven, and the network, entirely.
"""

import hashlib
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

from headrace.devstack.errors import StackError
from headrace.devstack.localproc import locked, log_tail

MIN_JAVA = 17
LIBS_MARKER = ".pom.sha256"
"""File in the libs folder holding the sha256 of the pom the jars were resolved from."""


# --- prerequisites -----------------------------------------------------------------------------


def java_executable() -> str | None:
    """The java the broker runs on: $JAVA_HOME's if set (as Kafka's own scripts do), else PATH's."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def java_major(java: str) -> int | None:
    """The major version `java -version` reports (8 for the old "1.8.0" form), None if unknown."""
    try:
        done = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr + done.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java() -> str:
    """The java executable, or a StackError saying how to get Java 17 or newer."""
    hint = "run scripts/bootstrap, or apt-get install openjdk-17-jre-headless"
    java = java_executable()
    if java is None:
        raise StackError("Java is not installed (Kafka 4 needs Java 17 or newer)", hint)
    major = java_major(java)
    if major is None:
        raise StackError(f"could not tell the version of {java} (`java -version`)", hint)
    if major < MIN_JAVA:
        raise StackError(f"{java} is Java {major}; Kafka 4 needs Java {MIN_JAVA} or newer", hint)
    return java


def check_maven(cache_dir: str | Path) -> None:
    """Maven is needed only while the jars are not resolved yet; then a StackError if missing."""
    if not libs_ready(cache_dir) and shutil.which("mvn") is None:
        raise StackError(
            "Maven (mvn) is not installed; it fetches the Kafka jars once",
            "run scripts/bootstrap, or apt-get install maven",
        )


# --- jars ---------------------------------------------------------------------------------------


def resource(name: str) -> bytes:
    return (resources.files("headrace.devstack") / "localstack" / name).read_bytes()


def libs_dir(cache_dir: str | Path) -> Path:
    return Path(cache_dir).expanduser().resolve() / "kafka" / "libs"


def _pom_sha256() -> str:
    return hashlib.sha256(resource("pom.xml")).hexdigest()


def libs_ready(cache_dir: str | Path) -> bool:
    """True when the jars were resolved from the current pom (then no Maven run is needed)."""
    marker = libs_dir(cache_dir) / LIBS_MARKER
    try:
        return marker.read_text().strip() == _pom_sha256()
    except OSError:
        return False


def ensure_libs(cache_dir: str | Path, *, timeout: float = 900.0) -> Path:
    """Resolve the broker's jars into `<cache_dir>/kafka/libs` unless already there; return it.

    Safe to call from several processes at once: a file lock makes one of them
    resolve while the others wait and then find the marker.
    """
    libs = libs_dir(cache_dir)
    if libs_ready(cache_dir):
        return libs
    check_maven(cache_dir)
    work = libs.parent
    work.mkdir(parents=True, exist_ok=True)
    with locked(work / ".libs.lock"):
        if libs_ready(cache_dir):
            return libs
        _resolve(libs, timeout)
    return libs


def _resolve(libs: Path, timeout: float) -> None:
    work = libs.parent
    cache = work.parent
    pom = work / "pom.xml"
    pom.write_bytes(resource("pom.xml"))
    # Resolve next to the live folder and swap at the end, so an interrupted
    # download never leaves a half-filled libs folder that looks complete.
    partial = work / "libs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    log = cache / "logs" / "maven.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={partial}",
        f"-Dmaven.repo.local={cache / 'm2'}",
    ]
    hint = (
        "the first start downloads about 60 MB from Maven Central: check the network or "
        f"the proxy in ~/.m2/settings.xml (Maven's output: {log})"
    )
    try:
        with log.open("wb") as out:
            done = subprocess.run(
                argv, cwd=work, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
    except subprocess.TimeoutExpired as exc:
        raise StackError(
            f"Maven did not resolve the Kafka jars within {timeout:.0f} s", hint
        ) from exc
    if done.returncode != 0:
        raise StackError(
            f"Maven could not resolve the Kafka jars (exit {done.returncode}):\n{log_tail(log)}",
            hint,
        )
    if not any(partial.glob("kafka_2.13-*.jar")):
        raise StackError(f"Maven finished but left no Kafka jar in {partial}", hint)
    (partial / LIBS_MARKER).write_text(_pom_sha256() + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    partial.rename(libs)
