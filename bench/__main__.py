"""``python -m bench <scenario> [--quick] [--label L] [--profile] [--targets T,..]
[--sources S,..] [--processes N] [--concurrency N] [--seconds S] [--pairs N] [--parts P,..]
[--kinds K,..]``.

Scenarios: kafka-throughput, kafka-restart, latency, invocations, memory, http-api (the
HTTP API front door against the same handler called directly), websocket (a local
websocket feed through the bridge's spool, per ``spool.fsync`` mode, against a bare
client), languages (cold start and warm round trip of the same function in Python, Go,
Node.js and Java under the runtime target), instances (the runtime host's instances under a
load that rises and falls), versus-benthos (the bridge against Benthos on the same topic and
endpoint, in interleaved pairs), idle (idle cost and start-up time of 1, 10 and 50 mappings
per source kind)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys

SCENARIOS = {
    "kafka-throughput": "bench.kafka_throughput",
    "kafka-restart": "bench.kafka_restart",
    "latency": "bench.latency",
    "invocations": "bench.invocations",
    "memory": "bench.memory",
    "http-api": "bench.http_api",
    "websocket": "bench.websocket",
    "languages": "bench.languages",
    "instances": "bench.instances",
    "versus-benthos": "bench.versus_benthos",
    "idle": "bench.idle",
}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few minutes)")
    parser.add_argument("--label", default="", help="added to the result file names")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="kafka-throughput, invocations, websocket: py-spy on the bridge (http)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="kafka-throughput: bridge processes sharing the consumer group (default 1)",
    )
    parser.add_argument(
        "--targets",
        default="http,runtime",
        help="kafka-throughput / latency: comma-separated targets (default http,runtime)",
    )
    parser.add_argument(
        "--sources",
        default="kafka,s3,dynamodb",
        help="latency: comma-separated sources (default kafka,s3,dynamodb)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=16,
        help="http-api: closed-loop clients (default 16)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="http-api: measured seconds per path, after a warm-up (default 10, --quick 5)",
    )
    parser.add_argument(
        "--pairs", type=int, default=5, help="versus-benthos: interleaved pairs (default 5)"
    )
    parser.add_argument(
        "--parts",
        default="throughput,unbatched,latency",
        help="versus-benthos: comma-separated parts (default throughput,unbatched,latency)",
    )
    parser.add_argument(
        "--kinds",
        default="kafka,sqs,dynamodb_streams,s3,local_dir,schedule,websocket",
        help="idle: comma-separated source kinds (default: all of them)",
    )
    args = parser.parse_args()
    module = importlib.import_module(SCENARIOS[args.scenario])
    kwargs = {"quick": args.quick, "label": args.label}
    if args.scenario in ("kafka-throughput", "latency"):
        kwargs["targets"] = args.targets.split(",")
    if args.scenario in ("kafka-throughput", "invocations", "websocket"):
        kwargs["profile"] = args.profile
    if args.scenario == "kafka-throughput":
        kwargs["processes"] = args.processes
    if args.scenario == "latency":
        kwargs["sources"] = [s for s in args.sources.split(",") if s]
    if args.scenario == "http-api":
        kwargs["concurrency"] = args.concurrency
        kwargs["seconds"] = args.seconds
    if args.scenario == "versus-benthos":
        kwargs["pairs"] = args.pairs
        kwargs["parts"] = [p for p in args.parts.split(",") if p]
    if args.scenario == "idle":
        kwargs["kinds"] = [k for k in args.kinds.split(",") if k]
    report = asyncio.run(module.run(**kwargs))
    print(report.path.with_suffix(".md").read_text())
    print(f"written: {report.path}.*")
    return 0


if __name__ == "__main__":
    sys.exit(main())
