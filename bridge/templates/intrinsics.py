"""CloudFormation's intrinsic functions, resolved where they can be, statically.

:class:`Resolver` resolves a value of a template on demand (only what the bridge uses:
an ``Fn::ImportValue`` in an IAM policy never matters): ``Ref`` (parameters, pseudo
parameters, resources), ``Fn::GetAtt``, ``Fn::Sub`` (both forms), ``Fn::Join``,
``Fn::Select``, ``Fn::Split``, ``Fn::If`` with the template's ``Conditions``
(``Fn::Equals``, ``Fn::And``, ``Fn::Or``, ``Fn::Not``, ``Condition``), ``Fn::FindInMap``,
``Fn::Base64`` and ``AWS::NoValue``. What cannot be known without AWS (``Fn::ImportValue``,
``Fn::GetAZs``, an attribute the bridge does not model) is a ConfigError naming the file,
the line and the key path.

A resource's name and attributes are what they would be on AWS, with the local name in
place of CloudFormation's generated one: the name property (``QueueName``, ``BucketName``,
``TableName``, ``FunctionName``...) when the template gives it, else the overlay's, else
the logical id (lower-cased for buckets, whose names must be).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from typing import Any

from bridge.config_errors import Loc
from bridge.templates.loader import Document

__all__ = ["NO_VALUE", "Missing", "Resolver"]


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()


class Missing:
    """A parameter without a value: an error only where it is used."""

    def __init__(self, name: str) -> None:
        self.name = name


#: the property holding a resource type's physical name
NAME_PROPERTY = {
    "AWS::SQS::Queue": "QueueName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Serverless::SimpleTable": "TableName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::Events::EventBus": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::Kinesis::Stream": "Name",
}

_SUB = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Resolves the values of one document (a template, or a serverless.yml whose
    ``resources.Resources`` are its resources)."""

    def __init__(
        self,
        document: Document,
        *,
        resources: Mapping[str, Any],
        parameters: Mapping[str, Any],
        pseudo: Mapping[str, str],
        names: Mapping[str, str],
        conditions: Mapping[str, Any] | None = None,
        mappings: Mapping[str, Any] | None = None,
        resources_loc: Loc = ("Resources",),
        conditions_loc: Loc = ("Conditions",),
        sqs_endpoint: str | None = None,
    ) -> None:
        self.document = document
        self.resources = resources
        self.parameters = parameters
        self.pseudo = pseudo
        self.names = names
        self.conditions = conditions or {}
        self.mappings = mappings or {}
        self.resources_loc = resources_loc
        self.conditions_loc = conditions_loc
        self.sqs_endpoint = sqs_endpoint  # queue URLs (Ref) are there
        self._condition_values: dict[str, bool] = {}

    # ------------------------------------------------------------ resources

    def resource_type(self, logical_id: str) -> str:
        resource = self.resources.get(logical_id)
        kind = resource.get("Type") if isinstance(resource, dict) else None
        return kind if isinstance(kind, str) else ""

    def physical_name(self, logical_id: str) -> str:
        """A resource's name where the bridge runs (see the module's docstring)."""
        if logical_id in self.names:
            return self.names[logical_id]
        resource = self.resources.get(logical_id) or {}
        kind = self.resource_type(logical_id)
        prop = NAME_PROPERTY.get(kind)
        props = resource.get("Properties") if isinstance(resource, dict) else None
        if prop and isinstance(props, dict) and prop in props:
            loc = (*self.resources_loc, logical_id, "Properties", prop)
            name = self.resolve(props[prop], loc)
            if isinstance(name, str) and name:
                return name
        return logical_id.lower() if kind == "AWS::S3::Bucket" else logical_id

    def arn(self, service: str, resource: str, *, region: bool = True) -> str:
        partition = self.pseudo["AWS::Partition"]
        if not region:
            return f"arn:{partition}:{service}:::{resource}"
        where = f"{self.pseudo['AWS::Region']}:{self.pseudo['AWS::AccountId']}"
        return f"arn:{partition}:{service}:{where}:{resource}"

    def _ref_resource(self, logical_id: str) -> str:
        kind = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        if kind == "AWS::SQS::Queue":
            account = self.pseudo["AWS::AccountId"]
            if self.sqs_endpoint:
                return f"{self.sqs_endpoint.rstrip('/')}/{account}/{name}"
            return f"https://sqs.{self.pseudo['AWS::Region']}.amazonaws.com/{account}/{name}"
        return name

    def _get_att(self, logical_id: str, attribute: str, loc: Loc) -> Any:
        kind = self.resource_type(logical_id)
        name = self.physical_name(logical_id)
        table = {
            "AWS::SQS::Queue": {
                "Arn": lambda: self.arn("sqs", name),
                "QueueName": lambda: name,
                "QueueUrl": lambda: self._ref_resource(logical_id),
            },
            "AWS::S3::Bucket": {
                "Arn": lambda: self.arn("s3", name, region=False),
                "DomainName": lambda: f"{name}.s3.amazonaws.com",
            },
            "AWS::DynamoDB::Table": {
                "Arn": lambda: self.arn("dynamodb", f"table/{name}"),
                "StreamArn": lambda: self.arn("dynamodb", f"table/{name}/stream/latest"),
            },
            "AWS::Lambda::Function": {"Arn": lambda: self.arn("lambda", f"function:{name}")},
            "AWS::Serverless::Function": {"Arn": lambda: self.arn("lambda", f"function:{name}")},
            "AWS::SNS::Topic": {
                "TopicArn": lambda: self.arn("sns", name),
                "TopicName": lambda: name,
            },
            "AWS::Events::EventBus": {
                "Arn": lambda: self.arn("events", f"event-bus/{name}"),
                "Name": lambda: name,
            },
            "AWS::Kinesis::Stream": {"Arn": lambda: self.arn("kinesis", f"stream/{name}")},
        }
        table["AWS::Serverless::SimpleTable"] = table["AWS::DynamoDB::Table"]
        getter: Callable[[], Any] | None = table.get(kind, {}).get(attribute)
        if getter is None:
            raise self.document.error(
                loc,
                f"Fn::GetAtt {logical_id}.{attribute}: not known without AWS "
                f"({kind or 'no such resource'})",
            )
        return getter()

    # ------------------------------------------------------------ values

    def resolve(self, value: Any, loc: Loc) -> Any:
        """``value`` with every intrinsic function resolved; ``AWS::NoValue`` drops a key
        or list item. Raise ConfigError naming ``loc`` for what cannot be resolved."""
        if isinstance(value, list):
            items = [self.resolve(item, (*loc, i)) for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref" or key.startswith("Fn::"):
                return self._function(key, arg, (*loc, key))
        out = {}
        for key, item in value.items():
            resolved = self.resolve(item, (*loc, key))
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _function(self, name: str, arg: Any, loc: Loc) -> Any:
        handler = getattr(self, "_fn_" + name.removeprefix("Fn::").lower(), None)
        if handler is None:
            raise self.document.error(loc, f"{name}: cannot be resolved without AWS")
        return handler(arg, loc)

    def _fn_ref(self, arg: Any, loc: Loc) -> Any:
        arg = self.resolve(arg, loc)
        if not isinstance(arg, str):
            raise self.document.error(loc, "Ref: expected a name")
        if arg == "AWS::NoValue":
            return NO_VALUE
        if arg in self.pseudo:
            return self.pseudo[arg]
        if arg.startswith("AWS::"):
            raise self.document.error(loc, f"Ref {arg}: not known without AWS")
        if arg in self.parameters:
            value = self.parameters[arg]
            if isinstance(value, Missing):
                raise self.document.error(
                    loc,
                    f"Ref {arg}: the parameter has no Default; give --parameter-overrides "
                    f"{arg}=VALUE (or the overlay's parameters)",
                )
            return value
        if arg in self.resources:
            return self._ref_resource(arg)
        raise self.document.error(loc, f"Ref {arg}: no such parameter or resource")

    def _fn_getatt(self, arg: Any, loc: Loc) -> Any:
        arg = self.resolve(arg, loc)
        if isinstance(arg, str):
            arg = arg.split(".", 1)
        if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(a, str) for a in arg)):
            raise self.document.error(loc, "Fn::GetAtt: expected [resource, attribute]")
        if arg[0] not in self.resources:
            raise self.document.error(loc, f"Fn::GetAtt {arg[0]}.{arg[1]}: no such resource")
        return self._get_att(arg[0], arg[1], loc)

    def _fn_sub(self, arg: Any, loc: Loc) -> Any:
        variables: dict[str, Any] = {}
        if isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], dict):
            text = arg[0]
            variables = self.resolve(arg[1], (*loc, 1))
        else:
            text = arg
        if not isinstance(text, str):
            raise self.document.error(loc, "Fn::Sub: expected a string")

        def repl(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):  # ${!Literal}
                return "${" + name[1:] + "}"
            if name in variables:
                value = variables[name]
            elif "." in name and name.split(".", 1)[0] in self.resources:
                resource, attribute = name.split(".", 1)
                value = self._get_att(resource, attribute, loc)
            else:
                value = self._fn_ref(name, loc)
            return self._text(value, loc)

        return _SUB.sub(repl, text)

    def _fn_join(self, arg: Any, loc: Loc) -> Any:
        arg = self.resolve(arg, loc)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise self.document.error(loc, "Fn::Join: expected [delimiter, [values]]")
        return str(arg[0]).join(self._text(item, loc) for item in arg[1])

    def _fn_select(self, arg: Any, loc: Loc) -> Any:
        arg = self.resolve(arg, loc)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list)):
            raise self.document.error(loc, "Fn::Select: expected [index, [values]]")
        try:
            return arg[1][int(arg[0])]
        except (ValueError, IndexError) as exc:
            raise self.document.error(loc, f"Fn::Select: no item {arg[0]!r}") from exc

    def _fn_split(self, arg: Any, loc: Loc) -> Any:
        arg = self.resolve(arg, loc)
        if not (isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], str)):
            raise self.document.error(loc, "Fn::Split: expected [delimiter, string]")
        return arg[1].split(str(arg[0]))

    def _fn_findinmap(self, arg: Any, loc: Loc) -> Any:
        arg = self.resolve(arg, loc)
        try:
            return self.mappings[arg[0]][arg[1]][arg[2]]
        except (KeyError, IndexError, TypeError) as exc:
            raise self.document.error(loc, f"Fn::FindInMap: no value for {arg!r}") from exc

    def _fn_base64(self, arg: Any, loc: Loc) -> Any:
        return base64.b64encode(self._text(self.resolve(arg, loc), loc).encode()).decode()

    def _fn_if(self, arg: Any, loc: Loc) -> Any:
        if not (isinstance(arg, list) and len(arg) == 3 and isinstance(arg[0], str)):
            raise self.document.error(loc, "Fn::If: expected [condition, if true, if false]")
        chosen = 1 if self.condition(arg[0], loc) else 2
        return self.resolve(arg[chosen], (*loc, chosen))

    def _fn_equals(self, arg: Any, loc: Loc) -> bool:
        arg = self.resolve(arg, loc)
        if not (isinstance(arg, list) and len(arg) == 2):
            raise self.document.error(loc, "Fn::Equals: expected [a, b]")
        return self._text(arg[0], loc) == self._text(arg[1], loc)

    def _fn_and(self, arg: Any, loc: Loc) -> bool:
        return all(self._truth(item, (*loc, i)) for i, item in enumerate(arg or []))

    def _fn_or(self, arg: Any, loc: Loc) -> bool:
        return any(self._truth(item, (*loc, i)) for i, item in enumerate(arg or []))

    def _fn_not(self, arg: Any, loc: Loc) -> bool:
        items = arg if isinstance(arg, list) else [arg]
        return not self._truth(items[0], (*loc, 0))

    def _truth(self, value: Any, loc: Loc) -> bool:
        if isinstance(value, dict) and set(value) == {"Condition"}:
            return self.condition(value["Condition"], loc)
        return bool(self.resolve(value, loc))

    def condition(self, name: str, loc: Loc) -> bool:
        """The value of the template's condition ``name``."""
        if name not in self._condition_values:
            if name not in self.conditions:
                raise self.document.error(loc, f"condition {name!r}: not in Conditions")
            self._condition_values[name] = False  # a cycle reads False, not forever
            self._condition_values[name] = self._truth(
                self.conditions[name], (*self.conditions_loc, name)
            )
        return self._condition_values[name]

    def _text(self, value: Any, loc: Loc) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | str):
            return str(value)
        raise self.document.error(loc, f"expected a string, got {value!r}")
