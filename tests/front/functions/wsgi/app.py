"""A plain WSGI application behind apig-wsgi, as Flask and Django are deployed to Lambda."""

import json
from urllib.parse import parse_qs

from apig_wsgi import make_lambda_handler


def application(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    answer = {
        "method": environ["REQUEST_METHOD"],
        "path": environ["PATH_INFO"],
        "query": parse_qs(environ.get("QUERY_STRING", "")),
        "body": body.decode(),
        "agent": environ.get("HTTP_USER_AGENT"),
    }
    start_response("200 OK", [("Content-Type", "application/json"), ("X-Framework", "wsgi")])
    return [json.dumps(answer).encode()]


handler = make_lambda_handler(application)
