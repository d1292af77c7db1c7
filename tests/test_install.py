"""A plain install runs (#22): the wheel carries the embedded default and its handler and
runs them outside the checkout; ``init`` writes a starter that runs; nothing of the test
tools comes with it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bridge import __version__, default, registry
from bridge.cli import main
from bridge.commands import default_config_path
from bridge.config import RuntimeFunction, parse_config

REPO = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip"]
TEST_TOOLS = {"pytest", "pytest-asyncio", "moto", "ruff", "mypy", "boto3", "matplotlib", "py-spy"}


# --- the wheel, and a fresh environment with it installed --------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel ``pip wheel`` builds from a copy of the checkout (a build writes ``build/``
    and ``*.egg-info`` into its source folder, which other work uses)."""
    work = tmp_path_factory.mktemp("wheel")
    skip = shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", ".*_cache", ".trigger-bridge"
    )
    shutil.copytree(REPO, work / "src", ignore=skip)
    _check([*PIP, "wheel", "-q", "--no-deps", "-w", work / "dist", work / "src"])
    [built] = (work / "dist").glob("trigger_bridge-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a new virtualenv with the wheel installed.

    Its dependencies are borrowed from this test's environment by a path line in a ``.pth``
    file (fast and offline; :func:`test_a_plain_install_pulls_awslambdaric_and_no_test_tools`
    pins what a real install pulls). The editable trigger-bridge of that environment stays
    out of reach: its import hook is installed by a ``.pth`` file there, and a path line
    does not run the ``.pth`` files of the folder it adds.
    """
    venv = tmp_path_factory.mktemp("venv")
    _check([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _check([*PIP, "--python", python, "install", "-q", "--no-deps", wheel])
    site = _check([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    Path(site.strip(), "_borrowed_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )
    return venv / "bin"


def _check(command: list[str | Path]) -> str:
    """Run ``command``; its stdout, or a failed test with its stderr."""
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"{command}: {done.stderr}"
    return done.stdout


def _environment() -> dict[str, str]:
    """This process's environment without what would point the bridge at the checkout or
    move the default's folders."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "TB_INBOX", "TB_STATE_DIR"}
    return {k: v for k, v in os.environ.items() if k not in drop}


@contextmanager
def _running(command: list[str | Path], folder: Path) -> Iterator[Path]:
    """``command`` running in ``folder`` until it logged ``mapping.started``; yields its log
    file; stops it with SIGINT afterwards and checks it exited 0."""
    log = folder.parent / f"{folder.name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=folder, env=_environment(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_for(log, "mapping.started")
        yield log
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()


def _wait_for(log: Path, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert time.monotonic() < deadline, f"no {text!r} in:\n{log.read_text()}"
        time.sleep(0.1)
    return log.read_text()


def _requirements(wheel: Path) -> dict[str, str]:
    """The wheel's ``Requires-Dist`` of a plain install (no extra): name -> whole line."""
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        lines = archive.read(metadata).decode().splitlines()
    required = [line.removeprefix("Requires-Dist: ") for line in lines if "Requires-Dist:" in line]
    plain = [req for req in required if "extra ==" not in req]
    return {re.split(r"[\s;\[<>=!~]", req, maxsplit=1)[0]: req for req in plain}


# --- what the wheel holds and pulls ------------------------------------------------------------


def test_the_wheel_holds_the_default_and_no_tests(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {"bridge/default/bridge.yaml", "bridge/default/hello/app.py"} <= set(names)
    top = {name.split("/")[0] for name in names}
    assert top == {"bridge", "connectors", f"trigger_bridge-{__version__}.dist-info"}


def test_a_plain_install_pulls_awslambdaric_and_no_test_tools(wheel: Path) -> None:
    required = _requirements(wheel)
    assert 'sys_platform == "linux"' in required["awslambdaric"]  # where it has wheels
    assert not TEST_TOOLS & set(required)


# --- the installed wheel, outside the checkout -------------------------------------------------


def test_installed_run_without_config_runs_the_packaged_default(
    installed: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with _running([installed / "trigger-bridge", "run"], empty) as log:
        packaged = installed.parent / "lib"
        assert f"config={packaged}" in log.read_text()  # the venv's copy, not the checkout's
        (empty / "inbox" / "hello.txt").write_text("hello\n")
        _wait_for(log, '"event": "ObjectCreated:Put", "bucket": "inbox", "key": "hello.txt"')
    assert (empty / ".trigger-bridge" / "checkpoints.sqlite3").exists()


def test_installed_init_writes_a_starter_that_validates_and_runs(
    installed: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    bridge = installed / "trigger-bridge"
    done = subprocess.run(
        [bridge, "init"], cwd=folder, env=_environment(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "wrote bridge.yaml",
        "wrote hello/app.py",
        "next: trigger-bridge run",
        "then, in another terminal in that folder: echo hello > inbox/hello.txt",
    ]
    handler = folder / "hello" / "app.py"  # the user's copy runs, not the package's
    handler.write_text(handler.read_text().replace('"bucket":', '"edited": True, "bucket":'))
    done = subprocess.run(
        [bridge, "validate"], cwd=folder, env=_environment(), capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("bridge.yaml: OK"), done.stderr
    with _running([bridge, "run"], folder) as log:
        assert "config=bridge.yaml" in log.read_text()
        (folder / "inbox" / "mine.txt").write_text("hi")
        _wait_for(log, '"edited": true, "bucket": "inbox", "key": "mine.txt"')


# --- in process: the default's choice, init's rules, the tables that must agree ----------------


def test_run_without_config_prefers_a_bridge_yaml_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_config_path() == default.CONFIG
    (tmp_path / "bridge.yaml").write_text("functions: {}\n")
    assert default_config_path() == Path("bridge.yaml")


def test_init_refuses_to_overwrite_without_force(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bridge.yaml").write_text("mine\n")
    assert main(["init"]) == 1
    assert "bridge.yaml already there, nothing written (--force overwrites)" in (
        capsys.readouterr().err
    )
    assert (tmp_path / "bridge.yaml").read_text() == "mine\n"
    assert not (tmp_path / "hello").exists()
    assert main(["init", "--force"]) == 0
    assert (tmp_path / "bridge.yaml").read_text() == default.starter_files()["bridge.yaml"]


def test_init_into_a_folder_says_to_cd_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "my app"]) == 0
    assert "next: cd 'my app' && trigger-bridge run" in capsys.readouterr().out
    assert (tmp_path / "my app" / "hello" / "app.py").is_file()


def test_the_starter_runs_its_own_handler_file() -> None:
    text = default.starter_files()["bridge.yaml"]
    function = parse_config(text, "bridge.yaml").functions["hello"]
    assert isinstance(function, RuntimeFunction)
    assert function.cwd == "hello" and function.command is not None
    assert function.command[-1] == "app.handler"
    assert "bridge.default" not in text


def test_config_local_yaml_is_the_packaged_default() -> None:
    assert (REPO / "config" / "local.yaml").read_bytes() == default.CONFIG.read_bytes()


def test_a_checkout_knows_every_builtin_connector_without_installing() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    entry_points = pyproject["project"]["entry-points"]["trigger_bridge.connectors"]
    assert entry_points == registry._BUILTINS


def test_a_missing_awslambdaric_is_named_with_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "awslambdaric" else find_spec(name, *a),
    )
    assert main(["validate", "--config", str(default.CONFIG)]) == 0
    err = capsys.readouterr().err
    assert "function hello runs awslambdaric, which is not installed" in err
    assert "pipx inject trigger-bridge awslambdaric" in err
