"""Build the functions in tests/languages/functions/<language>/ once, into a cache.

``build(language)`` returns a :class:`Built`: the ``command`` and ``cwd`` a ``runtime``
function entry needs. Each build goes to ``<cache>/functions/<language>-<key>/``, where
``<key>`` hashes the sources, the recipe and the tool versions (``go version``, ``node
--version``, ...), so a second run, or another checkout with the same sources, starts at
once, and a change of source or tool builds anew. ``<cache>`` is scripts/test-services's:
``$TB_CACHE_DIR`` or ``~/.cache/trigger-bridge``; Go's module and build caches and the
Maven repository are shared with it.

A build happens in a scratch folder that is renamed into place when it succeeded, so two
sessions building at once both end with a complete build. A missing tool or a failed build
raises :class:`BuildFailed` with the command and its output: the tests fail, never skip.

What each language needs (the CI machine has all of it):

- ``go``: Go 1.24+; ``github.com/aws/aws-lambda-go`` from the Go module proxy.
- ``node``: Node.js 20+ and npm; ``aws-lambda-ric`` 3.3.0 from npm, which compiles its
  native part (curl and aws-lambda-cpp) at install: g++, make, cmake, and autoconf,
  automake and libtool (Debian packages). 4.x needs Node.js 22. ``node-minimal`` runs the
  same handler under ``minimal-runtime.js``, a Runtime API client with no dependencies.
- ``java``: Java 17+ and Maven 3.6+; ``aws-lambda-java-runtime-interface-client`` from
  Maven Central.
- ``python``: the bridge's own interpreter with ``awslambdaric`` (nothing to build).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

FUNCTIONS = Path(__file__).resolve().parent / "functions"
LANGUAGES = ("python", "go", "node", "node-minimal", "java")

#: Lambda's own JVM options for its Java runtimes: a quicker start for short invocations
JAVA_OPTIONS = ("-XX:+TieredCompilation", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
JAVA_MAIN = "com.amazonaws.services.lambda.runtime.api.client.AWSLambda"
#: the runtime client loads its JNI library from here when set; else it unpacks it to the
#: fixed path /tmp/.libaws-lambda-jni.so at every start, and processes starting together
#: overwrite the file another one is loading (SIGBUS): Lambda gives each sandbox its own /tmp
JAVA_JNI_PROPERTY = "com.amazonaws.services.lambda.runtime.api.client.runtimeapi.NativeClient.JNI"
JAVA_JNI_LIBRARY = "libaws-lambda-jni.so"
JAVA_HANDLER = "example.Handler::handleRequest"
NODE_RIC = "node_modules/aws-lambda-ric/bin/index.mjs"

#: what aws-lambda-ric's install needs to compile curl and aws-lambda-cpp
AUTOTOOLS_HINT = (
    "aws-lambda-ric compiles its native part at install (Debian: apt-get install "
    "autoconf automake libtool cmake make g++)"
)

_RECIPE = "2"  # change to rebuild everything after a change of the build steps below


class BuildFailed(Exception):
    """A tool is missing or a build step failed; the message has the command and output."""


@dataclass(frozen=True)
class Built:
    """A language's function, ready to run: ``command`` in ``cwd``."""

    language: str
    command: tuple[str, ...]
    cwd: Path
    seconds: float  # how long the build took here; 0.0 when it came from the cache

    def function(self, **options: object) -> dict[str, object]:
        """A ``functions:`` entry of type ``runtime`` running it, with ``options`` on top."""
        return {"type": "runtime", "command": list(self.command), "cwd": str(self.cwd), **options}


def cache_dir() -> Path:
    """scripts/test-services's cache: ``$TB_CACHE_DIR`` or ``~/.cache/trigger-bridge``."""
    default = Path.home() / ".cache" / "trigger-bridge"
    return Path(os.environ.get("TB_CACHE_DIR") or default).expanduser().resolve()


def build(language: str) -> Built:
    """The function of ``language`` (one of :data:`LANGUAGES`), built unless cached.
    Raises :class:`BuildFailed`."""
    if language == "python":
        return Built(
            language,
            (sys.executable, "-m", "awslambdaric", "app.handler"),
            FUNCTIONS / "python",
            0.0,
        )
    if language == "go":
        home, seconds = _cached("go", _go_tools(), _build_go)
        return Built(language, (str(home / "bootstrap"),), home, seconds)
    if language in ("node", "node-minimal"):
        node = _tool("node", "install Node.js 20+ (Debian: apt-get install nodejs npm)")
        home, seconds = _cached("node", _node_tools(), _build_node)
        script = NODE_RIC if language == "node" else "minimal-runtime.js"
        return Built(language, (node, script, "index.handler"), home, seconds)
    if language == "java":
        home, seconds = _cached("java", _java_tools(), _build_java)
        java = _tool("java", "install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)")
        classpath = f"{home / 'classes'}:{home / 'lib'}/*"
        jni = f"-D{JAVA_JNI_PROPERTY}={home / JAVA_JNI_LIBRARY}"
        command = (java, *JAVA_OPTIONS, jni, "-cp", classpath, JAVA_MAIN, JAVA_HANDLER)
        return Built(language, command, home, seconds)
    raise ValueError(f"unknown language {language!r} (known: {', '.join(LANGUAGES)})")


# --- the cache ---------------------------------------------------------------------------------


def _cached(
    language: str, tools: Sequence[str], make: Callable[[Path, Path], None]
) -> tuple[Path, float]:
    """``(home, seconds)``: the build of ``functions/<language>`` for these tool versions,
    made by ``make(sources_copy, out)`` into a scratch folder when it is not cached yet."""
    sources = FUNCTIONS / language
    key = _key(sources, tools)
    root = cache_dir() / "functions"
    home = root / f"{language}-{key}"
    if (home / ".built").exists():
        return home, 0.0
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    scratch = Path(tempfile.mkdtemp(prefix=f".{language}-", dir=root))
    try:
        work = scratch / "src"
        shutil.copytree(sources, work, ignore=shutil.ignore_patterns("node_modules", "target"))
        make(work, scratch)
        (scratch / ".built").write_text("\n".join([f"recipe {_RECIPE}", *tools]) + "\n")
        scratch.chmod(0o755)  # mkdtemp made it private
        try:
            scratch.rename(home)
        except OSError:  # another session finished the same build first: use that one
            if not (home / ".built").exists():
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    return home, time.monotonic() - started


def _key(sources: Path, tools: Sequence[str]) -> str:
    digest = hashlib.sha256(f"recipe {_RECIPE}\n".encode())
    for tool in tools:
        digest.update(f"tool {tool}\n".encode())
    for path in sorted(p for p in sources.rglob("*") if p.is_file()):
        relative = path.relative_to(sources)
        if relative.parts[0] in ("node_modules", "target") or "__pycache__" in relative.parts:
            continue
        digest.update(f"file {relative}\n".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BuildFailed(f"{name} is not on PATH: {hint}")
    return path


def _version(command: Sequence[str]) -> str:
    """The first line a ``--version`` style command prints (stdout or stderr)."""
    done = re.sub(r"\x1b\[[0-9;]*m", "", _run(command, cwd=None)).strip()  # Maven's colours
    return done.splitlines()[0].strip() if done else " ".join(command)


def _run(command: Sequence[str], *, cwd: Path | None, env: Mapping[str, str] | None = None) -> str:
    """Run ``command``; its output, or :class:`BuildFailed` with the output if it fails."""
    try:
        done = subprocess.run(
            list(command),
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=1200,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildFailed(f"`{' '.join(command)}` could not run: {exc}") from exc
    if done.returncode != 0:
        raise BuildFailed(
            f"`{' '.join(command)}` failed (exit status {done.returncode}) in {cwd}:\n"
            + done.stdout[-20_000:]
        )
    return done.stdout


# --- the languages -----------------------------------------------------------------------------


def _go_env() -> dict[str, str]:
    """scripts/test-services's Go caches; no other toolchain is downloaded behind our back."""
    go = cache_dir() / "go"
    return {
        "CGO_ENABLED": "0",
        "GOMODCACHE": str(go / "mod"),
        "GOCACHE": str(go / "build"),
        "GOFLAGS": "-modcacherw -mod=readonly",
        "GOTOOLCHAIN": "local",
    }


def _go_tools() -> list[str]:
    go = _tool("go", "install Go 1.24 or newer")
    return [_version([go, "version"])]


def _build_go(work: Path, out: Path) -> None:
    go = _tool("go", "install Go 1.24 or newer")
    _run([go, "build", "-trimpath", "-o", str(out / "bootstrap"), "."], cwd=work, env=_go_env())


def _node_tools() -> list[str]:
    node = _tool("node", "install Node.js 20+ (Debian: apt-get install nodejs npm)")
    npm = _tool("npm", "install npm (Debian: apt-get install npm)")
    return [f"node {_version([node, '--version'])}", f"npm {_version([npm, '--version'])}"]


def _build_node(work: Path, out: Path) -> None:
    """``npm ci`` in the copy (aws-lambda-ric compiles its native part), then the copy is
    the function's folder."""
    npm = _tool("npm", "install npm (Debian: apt-get install nodejs npm)")
    for name in ("autoreconf", "libtoolize", "cmake", "make", "g++"):
        _tool(name, AUTOTOOLS_HINT)
    env = {"npm_config_cache": str(cache_dir() / "npm"), "npm_config_update_notifier": "false"}
    _run([npm, "ci", "--no-audit", "--no-fund"], cwd=work, env=env)
    for item in work.iterdir():
        item.rename(out / item.name)


def _java_tools() -> list[str]:
    java = _tool("java", "install Java 17+ (Debian: apt-get install openjdk-17-jre-headless)")
    mvn = _tool("mvn", "install Maven 3.6+ (Debian: apt-get install maven)")
    return [_version([java, "-version"]), _version([mvn, "-B", "--version"])]


def _build_java(work: Path, out: Path) -> None:
    """Compile the handler and copy its runtime classpath (the runtime interface client and
    its native library) next to it: ``classes/`` and ``lib/``."""
    mvn = _tool("mvn", "install Maven 3.6+ (Debian: apt-get install maven)")
    _run(
        [
            mvn,
            "-B",
            "-ntp",
            f"-Dmaven.repo.local={cache_dir() / 'maven-repository'}",
            "compile",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-DoutputDirectory={out / 'lib'}",
        ],
        cwd=work,
    )
    (work / "target" / "classes").rename(out / "classes")
    _unpack_jni(out / "lib", out / JAVA_JNI_LIBRARY)


def _unpack_jni(lib: Path, dest: Path) -> None:
    """This machine's JNI library of the runtime client, out of its jar into ``dest``."""
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch_64", "arm64": "aarch_64"}
    machine = arch.get(platform.machine().lower())
    [jar] = lib.glob("aws-lambda-java-runtime-interface-client-*.jar")
    name = f"jni/libaws-lambda-jni.linux-{machine}.so"
    with zipfile.ZipFile(jar) as archive:
        if name not in archive.namelist():
            raise BuildFailed(f"{jar.name} has no {name} for this machine ({platform.machine()})")
        dest.write_bytes(archive.read(name))
