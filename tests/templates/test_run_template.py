"""End to end: ``trigger-bridge run --template`` with an overlay, against ElasticMQ: a
message sent to the template's queue reaches its Python handler, which the bridge runs
under awslambdaric."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import boto3

from tests.services.fixtures import AwsEndpoint

HERE = Path(__file__).parent
REPO = HERE.parents[1]


def test_an_sqs_message_reaches_the_template_function(
    tmp_path: Path, elasticmq_endpoint: AwsEndpoint
) -> None:
    queue = f"tb-template-{uuid.uuid4().hex[:8]}"
    sqs = boto3.client("sqs", **elasticmq_endpoint.client_kwargs())
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    out = tmp_path / "out.jsonl"
    overlay = tmp_path / "local.yaml"
    overlay.write_text(
        f"""
region: {elasticmq_endpoint.region}
endpoints: {{sqs: "{elasticmq_endpoint.url}"}}
names: {{SimpleQueue: {queue}}}
functions:
  SQSPayloadLogger: {{env: {{OUT: "{out}"}}}}
bridge:
  state_dir: {tmp_path}/state
  admin: {{enabled: false}}
"""
    )
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": elasticmq_endpoint.access_key,
        "AWS_SECRET_ACCESS_KEY": elasticmq_endpoint.secret_key,
    }
    log = tmp_path / "bridge.log"
    template = HERE / "sam_sqs" / "template.yaml"
    command = [sys.executable, "-m", "bridge", "run", "--template", str(template)]
    command += ["--overlay", str(overlay), "--parameter-overrides", "Stage=prod"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "mapping.started" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        sqs.send_message(QueueUrl=url, MessageBody="hello from the template")
        while not out.exists() or not out.read_text().strip():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
        sqs.delete_queue(QueueUrl=url)
    [line] = out.read_text().splitlines()
    # the body, and STAGE from Globals.Function's !Ref Stage with the override
    assert json.loads(line) == {"body": "hello from the template", "stage": "prod"}
