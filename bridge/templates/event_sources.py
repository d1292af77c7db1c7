"""Event source mappings: the properties of ``AWS::Lambda::EventSourceMapping`` (and of
SAM's pull events, and the Serverless Framework's ``sqs``, ``stream``, ``kafka`` and
``msk`` events once named as AWS names them) as a mapping of the bridge.

The source comes from the event source ARN (an SQS queue, a DynamoDB table's stream, an
MSK cluster) or from a self-managed Kafka cluster's servers, where the overlay says they
are; the options keep AWS's meaning (batch size, batching window, retries, record age,
bisection, partial batch responses, filters, on-failure destination, concurrency).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge.config_errors import Loc
from bridge.templates.derived import Context, Draft, reject_unknown
from bridge.templates.failures import destination_config

__all__ = ["ESM_IGNORED", "ESM_OPTIONS", "event_source"]

#: CreateEventSourceMapping's properties that are mapping options of the same meaning
ESM_OPTIONS = {
    "BatchSize": "batch_size",
    "Enabled": "enabled",
    "MaximumBatchingWindowInSeconds": "maximum_batching_window_seconds",
    "MaximumRetryAttempts": "maximum_retry_attempts",
    "MaximumRecordAgeInSeconds": "maximum_record_age_seconds",
    "BisectBatchOnFunctionError": "bisect_batch_on_function_error",
    "FunctionResponseTypes": "function_response_types",
}
#: engine options: passed on when not AWS's default (the validation says if the bridge
#: lacks one)
_ESM_ENGINE = {
    "ParallelizationFactor": ("parallelization_factor", 1),
    "TumblingWindowInSeconds": ("tumbling_window_in_seconds", 0),
}
#: the properties a mapping's options come from (besides the source's)
_HANDLED = (
    set(ESM_OPTIONS)
    | set(_ESM_ENGINE)
    | {"StartingPosition", "FilterCriteria", "DestinationConfig", "ScalingConfig"}
)
#: what a Kafka source is read from
_KAFKA_PROPERTIES = {
    "Topics",
    "ConsumerGroupId",
    "KafkaBootstrapServers",
    "SelfManagedEventSource",
    "SelfManagedKafkaEventSourceConfig",
    "AmazonManagedKafkaEventSourceConfig",
    "StartingPositionTimestamp",
}
#: no meaning for the bridge: encryption, networking, metrics, provisioning, tags
ESM_IGNORED = {
    "KmsKeyArn",
    "MetricsConfig",
    "LoggingConfig",
    "ProvisionedPollerConfig",
    "Tags",
    "SecretsManagerKmsKeyId",
    "SourceAccessConfigurations",  # credentials come from the overlay's kafka
}


def event_source(
    context: Context,
    draft: Draft,
    props: Mapping[str, Any],
    loc: Loc,
    *,
    arn_key: str | None,
    kind: str,
) -> None:
    """Fill ``draft`` from the properties of an event source mapping (a SAM pull event or
    an ``AWS::Lambda::EventSourceMapping``): ``kind`` is ``SQS``, ``DynamoDB``, ``MSK``,
    ``SelfManagedKafka`` or ``ARN`` (the ARN under ``arn_key`` says)."""
    done = {arn_key, "FunctionName"} | ESM_IGNORED
    if kind == "SelfManagedKafka" or "SelfManagedEventSource" in props:
        _kafka_source(context, draft, props, loc, managed=False)
    else:
        if arn_key is None or arn_key not in props:
            raise context.error(loc, f"{arn_key or 'EventSourceArn'}: required")
        arn = context.value(props, arn_key, loc)
        _source_of_arn(context, draft, arn, (*loc, arn_key), props, loc)
    if draft.source.get("type") == "kafka":
        done |= _KAFKA_PROPERTIES
    _options(context, draft, props, loc)
    reject_unknown(context, props, loc, _HANDLED | done)


def _options(context: Context, draft: Draft, props: Mapping[str, Any], loc: Loc) -> None:
    """The mapping options of an event source mapping's properties (what does not name
    the source)."""
    for aws, option in ESM_OPTIONS.items():
        if aws in props:
            draft.set((option,), context.value(props, aws, loc), (*loc, aws))
    for aws, (option, default) in _ESM_ENGINE.items():
        value = context.value(props, aws, loc)
        if value is not None and value != default:
            draft.set((option,), value, (*loc, aws))
    if "StartingPosition" in props:
        value = context.value(props, "StartingPosition", loc)
        draft.set(("source", "starting_position"), value, (*loc, "StartingPosition"))
    if "FilterCriteria" in props:
        draft.set(
            ("filter_criteria",),
            _filter_criteria(context, context.value(props, "FilterCriteria", loc), loc),
            (*loc, "FilterCriteria"),
        )
    if "DestinationConfig" in props:
        config = context.value(props, "DestinationConfig", loc) or {}
        destination_config(context, draft, config, (*loc, "DestinationConfig"))
    if "ScalingConfig" in props:
        config = context.value(props, "ScalingConfig", loc) or {}
        if "MaximumConcurrency" in config:
            draft.set(
                ("maximum_concurrency",),
                config["MaximumConcurrency"],
                (*loc, "ScalingConfig", "MaximumConcurrency"),
            )


def _filter_criteria(context: Context, value: Any, loc: Loc) -> dict[str, Any]:
    """``FilterCriteria`` (``{Filters: [{Pattern: ...}]}``) as the ``filter_criteria`` option."""
    filters = value.get("Filters", []) if isinstance(value, dict) else None
    if not isinstance(filters, list):
        raise context.error((*loc, "FilterCriteria"), "expected {Filters: [{Pattern: ...}]}")
    return {
        "filters": [{"pattern": f.get("Pattern") if isinstance(f, dict) else f} for f in filters]
    }


def _source_of_arn(
    context: Context,
    draft: Draft,
    arn: Any,
    arn_loc: Loc,
    props: Mapping[str, Any],
    loc: Loc,
) -> None:
    """The source of an event source ARN: an SQS queue, a DynamoDB table's stream or an MSK
    cluster, where the overlay says they are."""
    parts = arn.split(":", 5) if isinstance(arn, str) else []
    if len(parts) != 6 or parts[0] != "arn":
        raise context.error(arn_loc, f"expected an ARN, got {arn!r}")
    service, region, account, resource = parts[2], parts[3], parts[4], parts[5]
    overlay = context.overlay
    source: dict[str, Any]
    if service == "sqs":
        name = overlay.name(resource)
        endpoint = overlay.endpoints.get("sqs")
        if endpoint:
            source = {"type": "sqs", "queue_name": name, "endpoint_url": endpoint}
        else:
            url = f"https://sqs.{region}.amazonaws.com/{account}/{name}"
            source = {"type": "sqs", "queue_url": url}
    elif service == "dynamodb":
        match = re.fullmatch(r"table/([^/]+)(/stream/.*)?", resource)
        if not match:
            raise context.error(arn_loc, f"expected a DynamoDB stream ARN, got {arn!r}")
        # the table's current stream: a local table's stream has a label of its own
        source = {"type": "dynamodb_streams", "table_name": overlay.name(match.group(1))}
        if overlay.endpoints.get("dynamodb"):
            source["endpoint_url"] = overlay.endpoints["dynamodb"]
    elif service == "kafka":
        _kafka_source(context, draft, props, loc, managed=True, arn_loc=arn_loc)
        return
    elif service == "kinesis":
        raise context.error(arn_loc, "Kinesis streams: the bridge has no Kinesis source")
    else:
        raise context.error(arn_loc, f"{arn}: the bridge has no source for {service} ARNs")
    if region and region != overlay.region and not source.get("endpoint_url"):
        source["region"] = region
    for key, value in source.items():
        draft.set(("source", key), value, arn_loc)


def _kafka_source(
    context: Context,
    draft: Draft,
    props: Mapping[str, Any],
    loc: Loc,
    *,
    managed: bool,
    arn_loc: Loc | None = None,
) -> None:
    """A kafka source: the overlay's servers (required for MSK), else the template's."""
    kafka = context.overlay.kafka
    draft.set(("source", "type"), "kafka", loc)
    servers: Any = kafka.bootstrap_servers if kafka else None
    servers_loc = loc
    if not servers and not managed:
        if "KafkaBootstrapServers" in props:
            servers = context.value(props, "KafkaBootstrapServers", loc)
            servers_loc = (*loc, "KafkaBootstrapServers")
        else:
            smes = context.value(props, "SelfManagedEventSource", loc) or {}
            servers = (smes.get("Endpoints") or {}).get("KafkaBootstrapServers")
            servers_loc = (*loc, "SelfManagedEventSource")
    if not servers:
        raise context.error(
            arn_loc or loc,
            "the Kafka cluster's bootstrap servers are not known here: give the overlay "
            "kafka: {bootstrap_servers: [host:port]}",
        )
    draft.set(("source", "bootstrap_servers"), servers, servers_loc)
    if "Topics" in props:
        draft.set(("source", "topics"), context.value(props, "Topics", loc), (*loc, "Topics"))
    _consumer_group(context, draft, props, loc)
    if "StartingPositionTimestamp" in props:
        value = context.value(props, "StartingPositionTimestamp", loc)
        draft.set(
            ("source", "starting_position_timestamp"), value, (*loc, "StartingPositionTimestamp")
        )
    if kafka and kafka.sasl:
        draft.set(("source", "sasl"), dict(kafka.sasl), loc)
    if kafka and kafka.tls is not None:
        draft.set(("source", "tls"), kafka.tls, loc)


def _consumer_group(context: Context, draft: Draft, props: Mapping[str, Any], loc: Loc) -> None:
    """The consumer group: ``ConsumerGroupId``, or that of the ``...KafkaEventSourceConfig``
    (which says nothing else the bridge takes)."""
    group = context.value(props, "ConsumerGroupId", loc)
    group_loc = (*loc, "ConsumerGroupId")
    for key in ("SelfManagedKafkaEventSourceConfig", "AmazonManagedKafkaEventSourceConfig"):
        config = context.value(props, key, loc) or {}
        for inner in sorted(set(config) - {"ConsumerGroupId"}):
            raise context.error((*loc, key, inner), "not supported by the bridge")
        if "ConsumerGroupId" in config:
            group, group_loc = config["ConsumerGroupId"], (*loc, key, "ConsumerGroupId")
    if group:
        draft.set(("source", "consumer_group_id"), group, group_loc)
