"""Outputs stored on S3 through django-storages, against a local S3-compatible server (moto)."""

from __future__ import annotations

import hashlib
import socket

import boto3
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from studio.models import GenerationRequest, Status
from studio.tasks import run_generation

pytestmark = pytest.mark.django_db(transaction=True)

BUCKET = "studio-test-media"


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_storage(s3_endpoint, settings, monkeypatch):
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "default_acl": None,
                "querystring_auth": True,
                "file_overwrite": False,
            },
        },
    }
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


def test_outputs_go_to_the_bucket_and_come_back_through_the_file_view(
    s3_storage, live_sandbox, designer, client, monkeypatch
):
    monkeypatch.setattr(GenerationRequest, "enqueue", lambda self: None)
    generation = GenerationRequest.submit(
        created_by=designer,
        route=live_sandbox,
        prompt='Label "S3"',
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    run_generation(str(generation.id))
    generation.refresh_from_db()
    assert generation.status == Status.SUCCEEDED, generation.failure_message

    output = generation.outputs.get()
    assert type(default_storage._wrapped).__name__ == "S3Storage"
    stored = s3_storage.get_object(Bucket=BUCKET, Key=output.file.name)["Body"].read()
    assert output.file.name.startswith(f"outputs/{generation.id}/")
    assert hashlib.sha256(stored).hexdigest() == output.sha256
    # The pointer kept on the row is a signed, expiring URL, not a public one.
    assert "Signature=" in output.public_url or "X-Amz-Signature=" in output.public_url

    client.force_login(designer)
    response = client.get(reverse("studio:output-file", args=[output.id]))
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == stored
