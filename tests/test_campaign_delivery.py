"""Delivery: the approved outputs of a campaign as a streamed ZIP with manifest.csv; the
reviewers' grid of one campaign."""

from __future__ import annotations

import hashlib
import io
import zipfile

import pytest
from django.core.files.base import ContentFile
from django.urls import reverse

from campaigns import delivery
from campaigns.models import launch
from review.models import decide, inspect_text
from studio.models import Attempt, GenerationRequest, OutputImage, Status
from tests.conftest import png
from tests.test_campaigns import FREE, check_free
from tests.test_storage_s3 import s3_endpoint  # noqa: F401  (the local S3 server fixture)

pytestmark = pytest.mark.django_db


def succeed_with_image(request: GenerationRequest, color) -> OutputImage:
    data = png(color=color)
    attempt = Attempt.begin(request, request.route)
    GenerationRequest.objects.filter(pk=request.pk).update(
        status=Status.SUCCEEDED, held=False, cost="0.011000"
    )
    output = OutputImage(
        request=request,
        attempt=attempt,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        width=64,
        height=64,
        format="png",
    )
    output.file.save("00.png", ContentFile(data), save=False)
    output.save()
    return output


@pytest.fixture
def reviewed(designer, reviewer, sandbox_route, monkeypatch):
    """Three rows: the first approved, the second rejected, the third approved with a label
    that looks like a spreadsheet formula."""
    monkeypatch.setattr("campaigns.models._release", lambda: None)
    checked = check_free(
        "product,headline,locale\nlamp,LUMA,de-DE\nchair,SIT,fr-FR\nsofa,=SUM(A1),\n"
    )
    campaign = launch(
        owner=designer, name="Spring", route=sandbox_route, rows=checked.rows, template=FREE
    )
    first, second, third = campaign.current_requests()
    outputs = []
    for request, color in (
        (first, (200, 0, 0, 255)),
        (second, (0, 200, 0, 255)),
        (third, (0, 0, 200, 255)),
    ):
        output = succeed_with_image(request, color)
        output.request.refresh_from_db()
        for label in output.request.expected_text_labels:
            inspect_text(output, reviewer, label, label, "exact")
        outputs.append(output)
    decide(outputs[0], reviewer, "approved")
    decide(outputs[1], reviewer, "rejected", reason="wrong chair")
    decide(outputs[2], reviewer, "approved")
    return campaign, outputs


def download(client, campaign) -> bytes:
    response = client.get(reverse("campaigns:download", args=[campaign.id]))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response.streaming
    return b"".join(response.streaming_content)


def test_the_zip_holds_the_approved_files_under_the_pattern_and_a_manifest(
    client, designer, reviewed
):
    campaign, outputs = reviewed
    client.force_login(designer)
    data = download(client, campaign)
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert sorted(archive.namelist()) == ["1-de-DE-64x64.png", "3-und-64x64.png", "manifest.csv"]
    assert archive.read("1-de-DE-64x64.png") == outputs[0].read()
    manifest = delivery.read_manifest(data)
    first = manifest[0]
    assert first["request_id"] == str(outputs[0].request_id)
    assert (first["row"], first["locale"], first["file_name"]) == (
        "1",
        "de-DE",
        "1-de-DE-64x64.png",
    )
    assert first["sha256"] == hashlib.sha256(outputs[0].read()).hexdigest()
    assert first["bytes"] == str(outputs[0].bytes)
    assert (first["route"], first["model_sent"], first["cost_usd"]) == (
        "sandbox",
        "gpt-image-2",
        "0.011000",
    )
    assert (first["decision"], first["reviewer"]) == ("Approved", "rita")
    assert first["label_inspections"] == "LUMA=exact"
    # A cell that starts like a formula is written as text.
    assert manifest[1]["label_inspections"] == "'=SUM(A1)=exact"


def test_the_zip_streams_in_pieces(reviewed):
    campaign, _outputs = reviewed
    chunks = [chunk for chunk in delivery.zip_chunks(campaign) if chunk]
    assert len(chunks) >= 3  # one or more per image, then the manifest and directory


def test_the_review_queue_narrows_to_one_campaign(
    client, reviewer, reviewed, designer, sandbox_route
):
    campaign, outputs = reviewed
    other = GenerationRequest.submit(
        created_by=designer,
        route=sandbox_route,
        prompt="p",
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    succeed_with_image(other, (1, 2, 3, 255))
    # Reset the rejected one to awaiting so the campaign has something awaiting review.
    OutputImage.objects.filter(pk=outputs[1].pk).update(review_status="awaiting")
    client.force_login(reviewer)
    page = client.get(reverse("review:queue"), {"campaign": str(campaign.id), "view": "grid"})
    body = page.content.decode()
    assert str(outputs[1].request_id) in body
    assert str(other.id) not in body
    assert client.get(reverse("review:queue"), {"campaign": "nonsense"}).status_code == 200


def test_the_reviewer_steps_through_one_campaign_with_j_and_k(
    client, reviewer, reviewed, designer, sandbox_route
):
    campaign, outputs = reviewed
    OutputImage.objects.filter(pk__in=[o.pk for o in outputs]).update(review_status="awaiting")
    other = GenerationRequest.submit(
        created_by=designer,
        route=sandbox_route,
        prompt="p",
        width=1024,
        height=1024,
        quality="low",
        output_format="png",
    )
    outside = succeed_with_image(other, (1, 2, 3, 255))
    client.force_login(reviewer)
    page = client.get(
        reverse("review:output", args=[outputs[0].id]), {"campaign": str(campaign.id)}
    ).content.decode()
    assert f"{reverse('review:output', args=[outputs[1].id])}?campaign={campaign.id}" in page
    assert str(outside.id) not in page


PUBLISH_BUCKET = "studio-test-published"


def test_publishing_copies_the_approved_files_and_manifest_to_the_s3_prefix(
    reviewed,
    s3_endpoint,  # noqa: F811  (the fixture imported above)
    settings,
    monkeypatch,
):
    import boto3

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=PUBLISH_BUCKET)
    settings.CAMPAIGN_PUBLISH_PREFIX = "deliveries"
    settings.STORAGES = {
        **settings.STORAGES,
        delivery.PUBLISH_STORAGE: {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": PUBLISH_BUCKET,
                "endpoint_url": s3_endpoint,
                "region_name": "us-east-1",
                "default_acl": None,
                "file_overwrite": True,
            },
        },
    }
    campaign, outputs = reviewed
    assert delivery.publish(campaign) == 2
    assert delivery.publish(campaign) == 2  # again: replaced, not duplicated
    keys = sorted(item["Key"] for item in client.list_objects_v2(Bucket=PUBLISH_BUCKET)["Contents"])
    folder = f"deliveries/{campaign.id}"
    assert keys == [
        f"{folder}/1-de-DE-64x64.png",
        f"{folder}/3-und-64x64.png",
        f"{folder}/manifest.csv",
    ]
    body = client.get_object(Bucket=PUBLISH_BUCKET, Key=f"{folder}/1-de-DE-64x64.png")["Body"]
    assert body.read() == outputs[0].read()
    manifest = client.get_object(Bucket=PUBLISH_BUCKET, Key=f"{folder}/manifest.csv")["Body"]
    assert str(outputs[0].request_id) in manifest.read().decode()
