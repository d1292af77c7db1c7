"""The functions of tests/languages/functions, built once per session (see builds.py)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.languages.builds import BuildFailed, Built, build

GetBuilt = Callable[[str], Built]

_BUILT = pytest.StashKey[dict[str, Built | BuildFailed]]()


@pytest.fixture(scope="session")
def built_function(request: pytest.FixtureRequest) -> GetBuilt:
    """``built_function(language)``: the language's function, built unless cached; a missing
    tool or a failed build fails the test with the build's output (once per session)."""
    built = request.config.stash.setdefault(_BUILT, {})

    def get(language: str) -> Built:
        if language not in built:
            try:
                built[language] = build(language)
            except BuildFailed as exc:
                built[language] = exc
        result = built[language]
        if isinstance(result, BuildFailed):
            pytest.fail(f"cannot build the {language} function: {result}", pytrace=False)
        return result

    return get


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    """One line with what the session built and how long each build took."""
    built = config.stash.get(_BUILT, {})
    if not built:
        return
    parts = []
    for language, result in built.items():
        if isinstance(result, BuildFailed):
            parts.append(f"{language} FAILED")
        elif result.seconds:
            parts.append(f"{language} built in {result.seconds:.1f}s")
        else:
            parts.append(f"{language} cached")
    terminalreporter.write_line("tests/languages functions: " + ", ".join(parts))
