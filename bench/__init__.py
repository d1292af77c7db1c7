"""trigger-bridge benchmarks, against the real test services (``scripts/test-services``).

``python -m bench <scenario> [--quick]`` runs one scenario and writes a JSON result, a
Markdown table and PNG plots under ``bench/results/``. Scenarios: ``kafka-throughput``,
``latency``, ``invocations``, ``memory``. See docs/benchmarks.md for the method.
"""
