"""The embedded default, shipped inside the package: a config and an example handler.

``trigger-bridge run`` without ``--config`` runs ``./bridge.yaml`` when there is one, else
:data:`CONFIG` (``bridge.yaml`` here): a ``runtime`` function ``hello`` (``hello/app.py``
here, under ``awslambdaric``) fed by a ``local_dir`` mapping on ``./inbox``.

How the packaged config finds its packaged handler: relative paths in a config (a
function's ``cwd``, a folder, ``state_dir``) are relative to the working directory, not to
the config file, and stay so (existing configs rely on it), and the package may be
installed anywhere. So :data:`CONFIG` names no folder: its command imports the handler as a
module of the installed package (``python -m awslambdaric bridge.default.hello.app.handler``;
the bridge runs ``python`` as its own interpreter, which has the package and
``awslambdaric``). Nothing is copied and nothing depends on where ``run`` is started.

:func:`starter_files` is what ``trigger-bridge init`` writes for a user to edit: the same
config, with the handler as a file next to it (``cwd: hello``, handler ``app.handler``,
as on Lambda).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["CONFIG", "CONFIG_NAME", "starter_files"]

#: the file ``run`` reads from the working directory, and ``init`` writes
CONFIG_NAME = "bridge.yaml"

CONFIG = Path(str(files(__name__).joinpath(CONFIG_NAME)))

_HANDLER = Path(str(files(__name__).joinpath("hello", "app.py")))

# the one place the packaged config and the starter differ: where the handler is
_PACKAGED_COMMAND = """\
    # the example handler shipped in the package, imported as a module wherever it is installed
    command: python -m awslambdaric bridge.default.hello.app.handler
"""
_STARTER_COMMAND = """\
    # the handler in hello/app.py (cwd is relative to the folder trigger-bridge runs in)
    command: python -m awslambdaric app.handler
    cwd: hello
"""


def starter_files() -> dict[str, str]:
    """What ``init`` writes: relative path -> text (the config first)."""
    config = CONFIG.read_text(encoding="utf-8")
    if _PACKAGED_COMMAND not in config:  # pinned by tests/test_install.py
        raise RuntimeError(f"{CONFIG}: the handler's command lines changed; update starter_files")
    return {
        CONFIG_NAME: config.replace(_PACKAGED_COMMAND, _STARTER_COMMAND),
        "hello/app.py": _HANDLER.read_text(encoding="utf-8"),
    }
