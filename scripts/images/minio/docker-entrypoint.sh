#!/bin/sh
# The official image's entry point: a command that does not start with "minio" (such as
# "server /data") is an argument list for minio.
if [ "${1}" != "minio" ]; then
    if [ -n "${1}" ]; then
        set -- minio "$@"
    fi
fi
exec "$@"
