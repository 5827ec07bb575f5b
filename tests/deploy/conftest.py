"""Fixtures for the deployment tests: a real S3 server (moto in server mode) on a free
local port, the site's own S3 settings pointed at it, and a free port nobody listens on."""
from __future__ import annotations

import socket
import uuid

import boto3
import pytest

from tests.test_settings import settings_with

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def closed_port() -> int:
    """A local port with nothing listening on it (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> str:
    """The URL of a moto S3 server, running in a thread for the session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint):
    return boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"], aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


@pytest.fixture(scope="session")
def s3_env(s3_endpoint, s3_client) -> dict[str, str]:
    """The variables a deployment sets for S3, with a bucket of this session's own."""
    bucket = f"petsite-test-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=bucket)
    return {"AWS_STORAGE_BUCKET_NAME": bucket, "AWS_S3_ENDPOINT_URL": s3_endpoint, "AWS_S3_REGION_NAME": REGION,
            **CREDENTIALS}


@pytest.fixture(scope="session")
def s3_storages(s3_env, tmp_path_factory) -> dict:
    """STORAGES as petsite/settings.py makes it from those variables (in a fresh process)."""
    return settings_with(tmp_path_factory.mktemp("s3-settings"), ["STORAGES"], DEBUG="1", **s3_env)["STORAGES"]


@pytest.fixture
def s3(settings, monkeypatch, s3_env, s3_storages, s3_client):
    """Media on the moto S3 server for one test: ``s3.keys()`` lists the bucket."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)  # boto3 reads them, as in a deployment
    settings.STORAGES = {**settings.STORAGES, "default": s3_storages["default"]}
    bucket = s3_env["AWS_STORAGE_BUCKET_NAME"]

    class Bucket:
        name = bucket
        client = s3_client

        @staticmethod
        def keys() -> set[str]:
            pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return {item["Key"] for page in pages for item in page.get("Contents", [])}

    return Bucket
