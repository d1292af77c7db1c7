"""The Serverless Framework's variables: ``${...}`` in a serverless.yml, resolved as the
Framework would for ``serverless deploy`` with the given options.

``${self:...}``, ``${opt:stage}`` / ``${sls:stage}`` (``provider.stage``, default ``dev``),
``${opt:region}`` / ``${aws:region}``, ``${aws:accountId}`` and ``${env:NAME}`` (each with
its ``, default``) are resolved; others (``${ssm:...}``, ``${cf:...}``, ``${file(...)}``)
are a ConfigError where they are used. CloudFormation's intrinsic functions (in
``resources``, or anywhere) are resolved too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from bridge.config_errors import Loc
from bridge.templates.intrinsics import Resolver
from bridge.templates.loader import Document
from bridge.templates.overlay import Overlay

__all__ = ["ServerlessResolver"]

_VARIABLE = re.compile(
    r"\$\{(self|opt|sls|env|aws|ssm|cf|s3|file|param|strToBool)([:(][^,}]*)?(?:,\s*([^}]*))?\}"
)


class ServerlessResolver(Resolver):
    """CloudFormation's functions plus the Framework's ``${...}`` variables."""

    def __init__(
        self, document: Document, overlay: Overlay, options: Mapping[str, str], **kwargs: Any
    ) -> None:
        super().__init__(document, **kwargs)
        self.overlay = overlay
        self.options = options  # ${opt:NAME}: the CLI options of `serverless deploy`
        provider = document.data.get("provider") or {}
        self.stage = "dev"  # what ${sls:stage} reads while provider.stage is resolved
        stage = provider.get("stage") if isinstance(provider, dict) else None
        self.stage = str(
            options.get("stage") or self.resolve(stage, ("provider", "stage")) or "dev"
        )

    def resolve(self, value: Any, loc: Loc) -> Any:
        """``value`` with the Framework's variables and then the intrinsic functions
        resolved; raise ConfigError naming ``loc`` for what cannot be."""
        if isinstance(value, str) and "${" in value:
            value = self._variables(value, loc)
        return super().resolve(value, loc)

    def _variables(self, text: str, loc: Loc) -> Any:
        whole = _VARIABLE.fullmatch(text.strip())
        if whole:
            return self._variable(whole, loc)
        return _VARIABLE.sub(lambda m: str(self._variable(m, loc)), text)

    def _variable(self, match: re.Match[str], loc: Loc) -> Any:
        source, rest, default = match.group(1), (match.group(2) or "")[1:], match.group(3)
        value: Any = None
        if source == "self":
            value = self.document.data
            for part in rest.split(".") if rest else []:
                value = value.get(part) if isinstance(value, dict) else None
            if isinstance(value, str) and "${" in value:
                value = self._variables(value, loc)
        elif source == "opt":
            value = self.options.get(rest)
            if value is None and rest == "region":
                value = self.overlay.region
        elif source == "sls" and rest == "stage":
            value = self.stage
        elif source == "aws" and rest == "region":
            value = self.overlay.region
        elif source == "aws" and rest == "accountId":
            value = self.overlay.account_id
        elif source == "env":
            value = os.environ.get(rest)
        if value is None and default is not None:
            value = default.strip().strip("'\"")
        if value is None:
            raise self.document.error(
                loc,
                f"{match.group(0)}: cannot be resolved here (self:, opt:stage, "
                "opt:region, sls:stage, aws:region, aws:accountId, env: can)",
            )
        return value
