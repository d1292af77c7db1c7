"""S3 notifications: a bucket's events for a function as an ``s3`` mapping of the bridge
(at the overlay's S3 endpoint), or as a ``local_dir`` one where the overlay's
``local_dirs`` has a folder standing for the bucket.

SAM's ``S3`` event and a bucket's ``NotificationConfiguration.LambdaConfigurations``
name them alike (:func:`s3_notification`); the Serverless Framework's ``s3`` event gives
the same parts its own way (:func:`s3_source`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.config_errors import Loc
from bridge.templates.derived import Context, Draft

__all__ = ["s3_notification", "s3_source"]


def s3_source(
    context: Context,
    draft: Draft,
    bucket: Any,
    events: Any,
    rules: Any,
    *,
    bucket_loc: Loc,
    events_loc: Loc,
    rules_loc: Loc,
) -> None:
    """The source of ``bucket``'s notifications of ``events`` (one or a list, None for the
    source's default) for keys matching ``rules`` (``[{Name: prefix|suffix, Value: ...}]``);
    raise ConfigError for no bucket name or another rule."""
    if not isinstance(bucket, str) or not bucket:
        raise context.error(bucket_loc, "expected a bucket name")
    overlay = context.overlay
    name = overlay.name(bucket)
    folder = overlay.local_dirs.get(bucket) or overlay.local_dirs.get(name)
    if folder is not None:
        draft.set(("source", "type"), "local_dir", bucket_loc)
        draft.set(("source", "path"), folder, bucket_loc)
        draft.set(("source", "bucket"), name, bucket_loc)
    else:
        draft.set(("source", "type"), "s3", bucket_loc)
        draft.set(("source", "bucket"), name, bucket_loc)
        if overlay.endpoints.get("s3"):
            draft.set(("source", "endpoint_url"), overlay.endpoints["s3"], bucket_loc)
    if events is not None:
        draft.set(("source", "events"), [events] if isinstance(events, str) else events, events_loc)
    for i, rule in enumerate(rules or []):
        kind = str(rule.get("Name", "")).lower() if isinstance(rule, dict) else ""
        if kind not in ("prefix", "suffix"):
            raise context.error((*rules_loc, i), "expected {Name: prefix|suffix, Value: ...}")
        draft.set(("source", kind), rule.get("Value", ""), (*rules_loc, i))


def s3_notification(
    context: Context,
    draft: Draft,
    props: Mapping[str, Any],
    loc: Loc,
    *,
    events_key: str,
    bucket_key: str | None = None,
    bucket: Any = None,
    bucket_loc: Loc = (),
) -> None:
    """A notification's properties (``props``, at ``loc``): the events under
    ``events_key``, the key rules under ``Filter.S3Key.Rules``, and the bucket under
    ``bucket_key`` or, without one, ``bucket`` (at ``bucket_loc``)."""
    rules = ((context.value(props, "Filter", loc) or {}).get("S3Key") or {}).get("Rules")
    if bucket_key is not None:
        bucket, bucket_loc = context.value(props, bucket_key, loc), (*loc, bucket_key)
    s3_source(
        context,
        draft,
        bucket,
        context.value(props, events_key, loc),
        rules,
        bucket_loc=bucket_loc,
        events_loc=(*loc, events_key),
        rules_loc=(*loc, "Filter", "S3Key", "Rules"),
    )
