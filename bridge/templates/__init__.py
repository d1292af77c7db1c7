"""AWS templates as configuration: a SAM or CloudFormation template, or a Serverless
Framework ``serverless.yml``, read as a bridge config.

Each function becomes a ``functions:`` entry (Python runtimes run under awslambdaric in
their code folder), each of its events a mapping or a route of an API, and the result goes
through the same validation as ``bridge.yaml`` (errors name the template's ``file:line``).
Where the template's queues, tables, buckets and clusters are on this machine is the
overlay's (:mod:`bridge.templates.overlay`). What cannot be mapped (an event type the
bridge lacks, an intrinsic function that cannot be resolved statically) is a ConfigError
naming the resource and the property.

Modules: ``loader`` (YAML/JSON with CloudFormation's tags and line numbers),
``intrinsics`` (``Ref``, ``Fn::GetAtt``, ``Fn::Sub``...), ``overlay``, ``derive`` (what the
formats share), ``sam``, ``cloudformation``, ``serverless``, ``convert`` (the entry points).
"""

from bridge.templates.convert import (
    Derivation,
    Source,
    add_template_arguments,
    convert,
    derivation_of_args,
    load_source,
    to_yaml,
)

__all__ = [
    "Derivation",
    "Source",
    "add_template_arguments",
    "convert",
    "derivation_of_args",
    "load_source",
    "to_yaml",
]
