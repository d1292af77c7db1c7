"""Where failed events go: AWS's retry limits and on-failure destinations as the mapping
options ``maximum_retry_attempts``, ``maximum_record_age_seconds`` and ``on_failure``.

AWS states them in three places, all mapped here: an event source mapping's
``DestinationConfig``, a function's asynchronous invocation configuration (SAM's
``EventInvokeConfig``) and the ``RetryPolicy`` / ``DeadLetterConfig`` of an EventBridge
rule's or schedule's target.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.config_errors import Loc
from bridge.templates.derived import Context, Draft, reject_unknown

__all__ = [
    "RETRIES",
    "destination_config",
    "invoke_config",
    "retry_policy",
    "set_on_failure",
    "set_retries",
]

#: AWS's retry limits (asynchronous invocation, EventBridge targets) as mapping options
RETRIES = (
    ("MaximumRetryAttempts", "maximum_retry_attempts"),
    ("MaximumEventAgeInSeconds", "maximum_record_age_seconds"),
)


def set_retries(
    draft: Draft,
    policy: Mapping[str, Any],
    loc: Loc,
    names: tuple[tuple[str, str], ...] = RETRIES,
) -> None:
    """The retry limits of ``policy`` (at ``loc``) that ``names`` maps to options."""
    for aws, option in names:
        if aws in policy:
            draft.set((option,), policy[aws], (*loc, aws))


def set_on_failure(context: Context, draft: Draft, arn: Any, loc: Loc) -> None:
    """``on_failure``: the destination ARN ``arn`` as a URI (see
    :meth:`Context.destination`); raise ConfigError naming ``loc`` if it has none."""
    draft.set(("on_failure",), context.destination(arn, loc), loc)


def destination_config(context: Context, draft: Draft, config: Mapping[str, Any], loc: Loc) -> None:
    """A ``DestinationConfig`` (at ``loc``): its ``OnFailure.Destination``; any other
    destination (``OnSuccess``) is a ConfigError."""
    for key in sorted(set(config) - {"OnFailure"}):
        raise context.error((*loc, key), "not supported by the bridge (only OnFailure)")
    failure = config.get("OnFailure") or {}
    if "Destination" in failure:
        set_on_failure(context, draft, failure["Destination"], (*loc, "OnFailure", "Destination"))


def invoke_config(context: Context, draft: Draft, config: Any, loc: Loc) -> None:
    """A function's asynchronous invocation configuration (SAM ``EventInvokeConfig``):
    retries, maximum event age and the on-failure destination of its S3, schedule and
    rule mappings. Nothing for a ``config`` that is not a mapping."""
    if not isinstance(config, dict):
        return
    set_retries(draft, config, loc)
    destination_config(
        context, draft, config.get("DestinationConfig") or {}, (*loc, "DestinationConfig")
    )
    known = {"DestinationConfig", "Qualifier", "FunctionName"} | {aws for aws, _ in RETRIES}
    reject_unknown(context, config, loc, known)


def retry_policy(context: Context, draft: Draft, props: Mapping[str, Any], loc: Loc) -> None:
    """EventBridge's ``RetryPolicy`` and ``DeadLetterConfig`` of a rule or schedule target
    (``props``, at ``loc``); a dead-letter queue must be given by its ``Arn``."""
    policy = context.value(props, "RetryPolicy", loc) or {}
    set_retries(draft, policy, (*loc, "RetryPolicy"))
    dead = context.value(props, "DeadLetterConfig", loc)
    if isinstance(dead, dict):
        dloc = (*loc, "DeadLetterConfig")
        if "Arn" not in dead:
            raise context.error(
                dloc, "give the queue's Arn (the bridge does not create one: Type: SQS)"
            )
        set_on_failure(context, draft, dead["Arn"], (*dloc, "Arn"))
