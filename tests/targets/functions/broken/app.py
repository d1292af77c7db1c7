"""A Lambda function whose cold start fails: its module cannot be imported."""

import module_that_does_not_exist  # noqa: F401


def handler(event, context):
    return "unreachable"
