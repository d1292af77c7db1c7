"""Real servers on loopback for integration tests.

``tests.services.fixtures`` is a pytest plugin (loaded from ``tests/conftest.py`` with
``pytest_plugins = ["tests.services.fixtures"]``). It registers one marker per server
(``kafka``, ``minio``, ``dynamodb``, ``moto``, ``elasticmq``, ``rie``; and ``sqs`` for the
tests that run once on each SQS server) and provides session fixtures that
use the servers of ``scripts/test-services``: an endpoint already in the environment
(``eval "$(scripts/test-services env)"``) wins; otherwise the plugin installs and starts the
server through the script, and stops at the end of the session what it started itself
(``TB_KEEP_SERVICES=1`` keeps them). A server that cannot be installed or started fails the
tests that need it; nothing is skipped.
"""
