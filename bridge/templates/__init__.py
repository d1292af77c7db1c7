"""AWS templates as configuration: a SAM or CloudFormation template, or a Serverless
Framework ``serverless.yml``, read as a bridge config.

Each function becomes a ``functions:`` entry (Python runtimes run under awslambdaric in
their code folder), each of its events a mapping or a route of an API, and the result goes
through the same validation as ``bridge.yaml`` (errors name the template's ``file:line``).
Where the template's queues, tables, buckets and clusters are on this machine is the
overlay's (:mod:`bridge.templates.overlay`). What cannot be mapped (an event type the
bridge lacks, an intrinsic function that cannot be resolved statically) is a ConfigError
naming the resource and the property.

The public API is what this module exports (from ``convert``); the other modules are the
implementation:

- reading: ``loader`` (YAML/JSON with CloudFormation's tags and line numbers),
  ``intrinsics`` (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``...), ``overlay``
- the formats: ``cloudformation`` (a template's resources), ``sam`` (a SAM function and
  its events), ``serverless`` (a serverless.yml's functions), ``serverless_events``,
  ``serverless_variables`` (the Framework's ``${...}``)
- what the formats share: ``derived`` (the config being derived, with its lines),
  ``functions``, ``event_sources`` (event source mappings), ``buckets`` (S3
  notifications), ``rules`` (schedules and EventBridge rules), ``failures`` (retries and
  on-failure destinations), ``routes`` (API routes)
- ``convert``: from a source to a validated config, and the command line's share
"""

from bridge.templates.convert import (
    Derivation,
    Source,
    add_template_arguments,
    convert,
    derivation_of_args,
    load_source,
    report,
    source_of_args,
    to_yaml,
)

__all__ = [
    "Derivation",
    "Source",
    "add_template_arguments",
    "convert",
    "derivation_of_args",
    "load_source",
    "report",
    "source_of_args",
    "to_yaml",
]
