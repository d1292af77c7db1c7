"""``trigger-bridge pause NAME`` and ``resume NAME``: stop a mapping of the running bridge
and keep it stopped (across reloads and restarts), or start it again, through the admin
API. What was settled is committed before it stops; it resumes from its checkpoint."""

from __future__ import annotations

import argparse
import json
import sys

import httpx

from bridge.commands import add_config_argument, load_or_report

NAME = "pause"
HELP = "stop a mapping of the running bridge until `resume`"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mapping", help="the mapping's name")
    add_config_argument(parser)
    parser.add_argument("--token", help="the admin API's auth_token, if the config sets one")


def main(args: argparse.Namespace) -> int:
    return change(args, "pause")


def change(args: argparse.Namespace, action: str) -> int:
    """POST ``/mappings/<name>/<action>`` to the bridge running on the config's state dir:
    0 when done (or already so), 1 when no bridge answers or it refused, 2 for a bad
    config or an unknown mapping."""
    config = load_or_report(args)
    if config is None:
        return 2
    from bridge.admin import read_admin_file

    token = args.token or config.admin.auth_token
    daemon = read_admin_file(config.state_dir)
    if daemon is None:
        print(
            f"trigger-bridge: no bridge is running on state dir {config.state_dir} "
            "(or its admin server is disabled)",
            file=sys.stderr,
        )
        return 1
    url = f"http://{daemon['address']}/mappings/{args.mapping}/{action}"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        # pausing drains the mapping: up to shutdown_timeout_seconds and its close
        response = httpx.post(url, headers=headers, timeout=config.shutdown_timeout_seconds + 30)
    except httpx.HTTPError as exc:
        print(f"trigger-bridge: {url}: {exc}", file=sys.stderr)
        return 1
    try:
        doc = response.json()
    except json.JSONDecodeError:
        doc = {"error": response.text}
    if response.status_code == 404:
        known = ", ".join(doc.get("mappings", [])) or "none"
        print(
            f"trigger-bridge: no mapping named {args.mapping!r} (mappings: {known})",
            file=sys.stderr,
        )
        return 2
    if response.status_code != 200:
        print(f"trigger-bridge: {action} {args.mapping}: {doc.get('error')}", file=sys.stderr)
        return 1
    done = {"pause": "paused", "resume": "resumed"}[action]
    print(f"{args.mapping}: {done}" if doc["changed"] else f"{args.mapping}: already {done}")
    return 0
