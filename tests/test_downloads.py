"""Downloads: every output and input saves as a file named `<frame>-<request id>-<n>.<ext>`,
with the same access checks as the inline file views (who may open what is in
test_url_permissions)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from studio.models import OutputImage

pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_an_output_downloads_as_an_attachment_named_after_its_request(client, designer, objects):
    output = objects["output_id"]
    client.force_login(designer)
    response = client.get(reverse("studio:output-download", args=[output]))
    request_id = objects["request_id"]
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"] == f'attachment; filename="edit-{request_id}-1.png"'
    inline = client.get(reverse("studio:output-file", args=[output]))
    assert body(response) == body(inline)


def test_the_name_carries_the_frame_key(client, designer, objects, seed_frames):
    generation = OutputImage.objects.get(pk=objects["output_id"]).request
    generation.frame_version = seed_frames["product-hero"].current_version
    generation.save(update_fields=["frame_version"])
    client.force_login(designer)
    response = client.get(reverse("studio:output-download", args=[objects["output_id"]]))
    assert f'filename="product-hero-{generation.id}-1.png"' in response["Content-Disposition"]


def test_every_input_downloads_with_its_role_and_place(client, designer, objects):
    client.force_login(designer)
    names = [
        client.get(reverse("studio:input-download", args=[item.pk]))["Content-Disposition"]
        for item in OutputImage.objects.get(pk=objects["output_id"]).request.inputs.all()
    ]
    request_id = objects["request_id"]
    assert names == [
        f'attachment; filename="edit-{request_id}-source-1.png"',
        f'attachment; filename="edit-{request_id}-mask-2.png"',
    ]


def test_a_deleted_file_is_a_404_not_a_500(client, designer, objects):
    output = OutputImage.objects.get(pk=objects["output_id"])
    output.deleted_at = timezone.now()
    output.save(update_fields=["deleted_at"])
    client.force_login(designer)
    assert client.get(reverse("studio:output-download", args=[output.pk])).status_code == 404
    output.deleted_at = None
    output.save(update_fields=["deleted_at"])
    output.file.delete(save=False)
    assert client.get(reverse("studio:output-download", args=[output.pk])).status_code == 404


def test_another_designer_gets_a_404(client, other_designer, objects):
    client.force_login(other_designer)
    assert (
        client.get(reverse("studio:output-download", args=[objects["output_id"]])).status_code
        == 404
    )


def test_the_request_page_offers_downloads_and_the_copy_button(client, designer, objects):
    client.force_login(designer)
    page = client.get(
        OutputImage.objects.get(pk=objects["output_id"]).request.get_absolute_url()
    ).content.decode()
    assert reverse("studio:output-download", args=[objects["output_id"]]) in page
    for item in OutputImage.objects.get(pk=objects["output_id"]).request.inputs.all():
        assert reverse("studio:input-download", args=[item.pk]) in page
    assert f'data-copy="{objects["request_id"]}"' in page


def test_a_partial_preview_downloads_as_a_preview(client, designer, objects):
    from django.core.files.base import ContentFile

    final = OutputImage.objects.get(pk=objects["output_id"])
    preview = OutputImage(
        request=final.request,
        attempt=final.attempt,
        kind=OutputImage.Kind.PARTIAL,
        sha256="1" * 64,
        bytes=10,
        width=64,
        height=64,
        format="png",
    )
    preview.file.save("partial-00.png", ContentFile(b"\x89PNG not really"), save=False)
    preview.save()
    client.force_login(designer)
    page = client.get(final.request.get_absolute_url()).content.decode()
    url = reverse("studio:output-download", args=[preview.pk])
    assert url in page
    name = client.get(url)["Content-Disposition"]
    assert name == f'attachment; filename="edit-{final.request_id}-preview-1.png"'
