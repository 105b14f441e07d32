"""The edit page and its server-side checks; lineage, comparison and drift on the request page."""

from __future__ import annotations

import hashlib
import io
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image

from studio import pricing
from studio.forms import EditForm
from studio.models import (
    Attempt,
    Budget,
    GenerationRequest,
    InputImage,
    OutputImage,
    Route,
    Status,
)
from tests.edit_fixtures import (
    encoded,
    mask_png,
    refused_files,
    source_image,
    source_png,
    upload,
)

pytestmark = pytest.mark.django_db

SETTINGS = {
    "size": "source",
    "quality": "low",
    "output_format": "png",
    "background": "auto",
    "n": "1",
}
PROMPT = 'Put a sign that says "OPEN" in the window'


@pytest.fixture(autouse=True)
def upload_temp_dir(settings, tmp_path) -> Path:
    """Where Django spools uploads over 2.5 MB; every test checks it is left empty."""
    folder = tmp_path / "upload-temp"
    folder.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = str(folder)
    return folder


def post_edit(client, route, files: dict | None = None, **fields):
    data = {**SETTINGS, "route": route.pk, "prompt": PROMPT, **fields}
    for name, value in (files or {}).items():
        data[name] = value
    return client.post(reverse("studio:edit-new"), data)


def good_files(**extra) -> dict:
    return {"source": upload("room.png", source_png()), **extra}


def stored_files(settings) -> list[Path]:
    media = Path(settings.MEDIA_ROOT)
    return [path for path in media.rglob("*") if path.is_file()] if media.exists() else []


def make_output(user, route, size=(1024, 1024), fmt="png") -> OutputImage:
    """A finished generation with one stored output, as the worker leaves it."""
    generation = GenerationRequest.objects.create(
        created_by=user,
        route=route,
        prompt="A room",
        prompt_sha256=hashlib.sha256(b"A room").hexdigest(),
        width=size[0],
        height=size[1],
        quality="low",
        output_format=fmt,
        provider_model="gpt-image-2",
        status=Status.SUCCEEDED,
    )
    attempt = Attempt.objects.create(
        request=generation, number=1, route=route, model_requested="gpt-image-2"
    )
    data = encoded(source_image(*size), {"png": "PNG", "jpeg": "JPEG"}[fmt])
    output = OutputImage(
        request=generation,
        attempt=attempt,
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        width=size[0],
        height=size[1],
        format=fmt,
    )
    output.file.save(f"00.{fmt}", ContentFile(data), save=False)
    output.save()
    return output


class TestEveryRuleOnTheServer:
    @pytest.mark.parametrize(
        ("case", "field", "name", "data", "message"),
        refused_files(),
        ids=[case[0] for case in refused_files()],
    )
    def test_it_gives_the_rules_message_and_leaves_nothing_behind(
        self,
        client,
        designer,
        sandbox_route,
        settings,
        upload_temp_dir,
        case,
        field,
        name,
        data,
        message,
    ):
        client.force_login(designer)
        mime = "image/jpeg" if name.endswith(".jpg") else "image/png"
        files = good_files() if field == "mask" else {}
        files[field] = upload(name, data, mime)
        response = post_edit(client, sandbox_route, files)

        assert response.status_code == 200
        errors = response.context["form"].errors[field]
        assert any(message in error for error in errors), errors
        assert message.split(" (")[0] in response.content.decode().replace("&#x27;", "'")
        assert not GenerationRequest.objects.exists()
        assert not InputImage.objects.exists()
        assert stored_files(settings) == []
        assert list(upload_temp_dir.iterdir()) == []

    @pytest.mark.parametrize("size", ["1024x1024", "source"])
    def test_seventeen_images_are_refused(self, client, designer, sandbox_route, settings, size):
        client.force_login(designer)
        small = encoded(source_image(64, 64))
        references = [upload(f"ref-{i}.png", small) for i in range(16)]
        response = post_edit(client, sandbox_route, good_files(references=references), size=size)
        # One error for one problem: the size follows from the source, never named too.
        assert response.context["form"].errors == {
            "references": ["An edit takes at most 16 input images (17 given)."]
        }
        assert not GenerationRequest.objects.exists()
        assert stored_files(settings) == []

    def test_sixteen_images_are_accepted(self, client, designer, sandbox_route):
        client.force_login(designer)
        small = encoded(source_image(64, 64))
        references = [upload(f"ref-{i}.png", small) for i in range(15)]
        response = post_edit(client, sandbox_route, good_files(references=references))
        assert response.status_code == 302
        assert GenerationRequest.objects.get().inputs.count() == 16

    def test_a_bad_reference_is_named(self, client, designer, sandbox_route):
        client.force_login(designer)
        references = [upload("fine.png", source_png()), upload("notes.png", b"hello")]
        response = post_edit(client, sandbox_route, good_files(references=references))
        [error] = response.context["form"].errors["references"]
        assert error.startswith("notes.png: Each input image must be a PNG, JPEG or WebP")
        assert not GenerationRequest.objects.exists()

    def test_no_source_is_a_form_error(self, client, designer, sandbox_route):
        client.force_login(designer)
        response = post_edit(client, sandbox_route, {"mask": upload("mask.png", mask_png())})
        assert response.context["form"].errors["source"] == ["Choose the image to edit."]
        assert not GenerationRequest.objects.exists()

    def test_a_route_without_masks_is_refused_for_a_masked_edit(
        self, client, designer, sandbox_route
    ):
        sandbox_route.supports_masks = False
        sandbox_route.save()
        client.force_login(designer)
        response = post_edit(client, sandbox_route, good_files(mask=upload("mask.png", mask_png())))
        assert "does not take masks" in response.context["form"].errors["mask"][0]
        assert not GenerationRequest.objects.exists()

    def test_a_budget_refusal_leaves_no_file_behind(
        self, client, designer, provider_route, price_sheet, settings
    ):
        Budget.objects.create(user=designer, monthly_limit=Decimal("0.01"))
        client.force_login(designer)
        response = post_edit(
            client, provider_route, good_files(mask=upload("mask.png", mask_png()))
        )
        assert "budget" in str(response.context["form"].non_field_errors())
        assert not GenerationRequest.objects.exists()
        assert stored_files(settings) == []


class TestSubmittingAnEdit:
    def test_it_stores_every_input_and_queues_an_edit(
        self, client, designer, sandbox_route, price_sheet, settings
    ):
        client.force_login(designer)
        reference = encoded(source_image(512, 768), "JPEG", quality=90)
        response = post_edit(
            client,
            sandbox_route,
            good_files(
                mask=upload("mask.png", mask_png()),
                references=[upload("ref.jpg", reference, "image/jpeg")],
            ),
        )
        generation = GenerationRequest.objects.get()
        assert response.status_code == 302 and response.url == generation.get_absolute_url()
        assert generation.operation == GenerationRequest.Operation.EDIT
        assert (generation.width, generation.height) == (1024, 1024)  # "same as the source"

        source, reference_row, mask = generation.inputs.order_by("position")
        assert [source.role, reference_row.role, mask.role] == ["source", "reference", "mask"]
        assert (source.width, source.height, source.format, source.mode) == (
            1024,
            1024,
            "png",
            "RGB",
        )
        assert (reference_row.width, reference_row.height, reference_row.format) == (
            512,
            768,
            "jpeg",
        )
        assert (mask.format, mask.mode) == ("png", "RGBA")
        for item in (source, reference_row, mask):
            assert item.file.name == f"inputs/{generation.id}/{item.id}.{item.file.name[-3:]}"
            data = default_storage.open(item.file.name).read()
            assert hashlib.sha256(data).hexdigest() == item.sha256
        assert source.original_name == "room.png"
        assert source.original_sha256 == hashlib.sha256(source_png()).hexdigest()

        shape = generation.request_shape()
        assert (shape["input_image_count"], shape["mask"]) == (2, True)
        image_tokens = pricing.estimate_input_image_tokens(
            1024, 1024
        ) + pricing.estimate_input_image_tokens(512, 768)
        estimate = sandbox_route.estimate(
            prompt=generation.prompt, width=1024, height=1024, quality="low"
        )
        assert generation.estimated_cost == estimate.cost + pricing.cost_of_usage(
            pricing.Usage(input_image_tokens=image_tokens), price_sheet
        )

    def test_same_as_the_source_rounds_to_a_legal_size(self, client, designer, sandbox_route):
        client.force_login(designer)
        response = post_edit(
            client, sandbox_route, {"source": upload("odd.png", source_png(1000, 750))}
        )
        assert response.status_code == 302
        assert GenerationRequest.objects.get().size == "992x752"

    def test_a_preset_size_can_be_chosen_instead(self, client, designer, sandbox_route):
        client.force_login(designer)
        post_edit(client, sandbox_route, good_files(), size="1536x1024")
        assert GenerationRequest.objects.get().size == "1536x1024"

    def test_an_edit_frame_renders_its_prompt(self, client, designer, sandbox_route, seed_frames):
        client.force_login(designer)
        frame = seed_frames["targeted-edit"]
        response = post_edit(
            client,
            sandbox_route,
            good_files(mask=upload("mask.png", mask_png())),
            prompt="",
            frame=frame.pk,
            slot_fixed="the lamp and its label",
            slot_region="the wall",
            slot_new_detail="pale green plaster",
        )
        assert response.status_code == 302, response.context["form"].errors
        generation = GenerationRequest.objects.get()
        assert "Change only the wall to pale green plaster." in generation.prompt
        assert generation.frame_version.frame == frame


class TestEditThisImage:
    def test_every_output_offers_an_edit(self, client, designer, sandbox_route):
        output = make_output(designer, sandbox_route)
        client.force_login(designer)
        page = client.get(output.request.get_absolute_url()).content.decode()
        assert f"{reverse('studio:edit-new')}?output={output.id}" in page

    def test_the_output_becomes_the_source_and_the_parent(self, client, designer, sandbox_route):
        output = make_output(designer, sandbox_route, size=(1536, 1024))
        client.force_login(designer)
        page = client.get(reverse("studio:edit-new"), {"output": output.id})
        assert page.status_code == 200
        assert 'data-testid="source-output"' in page.content.decode()
        assert "Same as the source (1536 x 1024)" in page.content.decode()

        response = post_edit(client, sandbox_route, source_output=str(output.id))
        assert response.status_code == 302, response.context["form"].errors
        child = GenerationRequest.objects.exclude(pk=output.request_id).get()
        assert child.parent_output == output
        assert child.size == "1536x1024"
        source = child.source_input
        assert source.from_output == output
        assert (source.width, source.height) == (1536, 1024)
        assert child in output.request.edits_of_outputs()

    def test_another_designers_output_cannot_be_edited(
        self, client, designer, other_designer, sandbox_route
    ):
        output = make_output(other_designer, sandbox_route)
        client.force_login(designer)
        assert client.get(reverse("studio:edit-new"), {"output": output.id}).status_code == 404
        response = post_edit(client, sandbox_route, source_output=str(output.id))
        assert response.context["form"].errors["source"] == [
            "That output is not available to edit."
        ]
        assert not GenerationRequest.objects.filter(created_by=designer).exists()

    def test_run_again_sends_the_same_inputs(self, client, designer, sandbox_route):
        client.force_login(designer)
        post_edit(client, sandbox_route, good_files(mask=upload("mask.png", mask_png())))
        first = GenerationRequest.objects.get()
        client.post(reverse("studio:request-run-again", args=[first.id]))
        second = GenerationRequest.objects.exclude(pk=first.pk).get()
        assert second.operation == "edit"
        assert [(i.role, i.sha256) for i in second.inputs.all()] == [
            (i.role, i.sha256) for i in first.inputs.all()
        ]
        assert all(str(second.id) in i.file.name for i in second.inputs.all())


class TestTheComposerHandsEditFramesOver:
    def test_choosing_an_edit_frame_opens_the_edit_page(self, client, designer, seed_frames):
        client.force_login(designer)
        response = client.get(reverse("studio:request-new"), {"frame": "targeted-edit"})
        assert response.status_code == 302
        assert response.url == reverse("studio:edit-new") + "?frame=targeted-edit"
        frame = seed_frames["reference-edit"]
        htmx = client.get(
            reverse("studio:request-new"), {"frame": frame.pk}, headers={"HX-Request": "true"}
        )
        assert htmx["HX-Redirect"] == reverse("studio:edit-new") + "?frame=reference-edit"

    def test_the_edit_page_lists_only_edit_frames(self, client, designer, seed_frames):
        client.force_login(designer)
        page = client.get(reverse("studio:edit-new"), {"frame": "targeted-edit"})
        frames = {frame.key for frame in page.context["form"].fields["frame"].queryset}
        assert frames == {"targeted-edit", "reference-edit"}
        assert "Region to change" in page.content.decode()

    def test_changing_the_frame_swaps_only_the_prompt_fields(self, client, designer, seed_frames):
        client.force_login(designer)
        frame = seed_frames["reference-edit"]
        response = client.get(
            reverse("studio:edit-new"), {"frame": frame.pk}, headers={"HX-Request": "true"}
        )
        text = response.content.decode()
        assert text.lstrip().startswith('<div id="prompt-fields"')
        assert "The change" in text
        assert 'name="source"' not in text  # the chosen files stay where they are


class TestEditPageAccess:
    def test_the_page_carries_the_rules_for_the_browser(self, client, designer, sandbox_route):
        client.force_login(designer)
        page = client.get(reverse("studio:edit-new")).content.decode()
        assert '<script id="image-rules" type="application/json">' in page
        assert '"max_images": 16' in page
        assert 'enctype="multipart/form-data"' in page

    def test_reviewers_cannot_edit(self, client, reviewer):
        client.force_login(reviewer)
        assert client.get(reverse("studio:edit-new")).status_code == 403

    def test_anonymous_users_log_in_first(self, client):
        response = client.get(reverse("studio:edit-new"))
        assert response.status_code == 302 and "login" in response.url

    def test_the_preview_takes_posts_only(self, client, designer):
        client.force_login(designer)
        assert client.get(reverse("studio:edit-preview")).status_code == 405

    def test_the_preview_prices_the_input_images_the_browser_measured(
        self, client, designer, sandbox_route
    ):
        client.force_login(designer)
        response = client.post(
            reverse("studio:edit-preview"),
            {**SETTINGS, "route": sandbox_route.pk, "prompt": PROMPT, "input_sizes": "1024x1024"},
            headers={"HX-Request": "true"},
        )
        estimate = response.context["preview"].estimate
        assert estimate.input_image_tokens == pricing.estimate_input_image_tokens(1024, 1024)
        assert 'data-testid="input-image-tokens"' in response.content.decode()
        assert not GenerationRequest.objects.exists()

    def test_inputs_are_served_to_their_owner_only(
        self, client, designer, other_designer, reviewer, sandbox_route
    ):
        client.force_login(designer)
        post_edit(client, sandbox_route, good_files())
        source = InputImage.objects.get()
        url = reverse("studio:input-file", args=[source.id])
        response = client.get(url)
        assert response["Content-Type"] == "image/png"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert b"".join(response.streaming_content) == source.read()
        client.force_login(other_designer)
        assert client.get(url).status_code == 404
        client.force_login(reviewer)
        assert client.get(url).status_code == 200


class TestLineageAndDriftOnTheRequestPage:
    def edit_of(self, client, output, route, mask=True) -> GenerationRequest:
        files = {"mask": upload("mask.png", mask_png(output.width, output.height))} if mask else {}
        response = post_edit(client, route, files, source_output=str(output.id))
        assert response.status_code == 302, response.context["form"].errors
        return GenerationRequest.objects.get(parent_output=output)

    def finish(self, generation: GenerationRequest, image: Image.Image) -> OutputImage:
        """Store an output for the edit and record its drift, as the worker would."""
        from studio import drift

        output = make_output(generation.created_by, generation.route)
        output.request = generation
        data = encoded(image)
        output.file.save("edited.png", ContentFile(data), save=False)
        output.save()
        GenerationRequest.objects.filter(pk=generation.pk).update(status=Status.SUCCEEDED)
        drift.check_edit(generation, [(output, data)])
        output.refresh_from_db()
        return output

    def test_parent_children_and_comparison_are_shown(self, client, designer, sandbox_route):
        parent = make_output(designer, sandbox_route)
        client.force_login(designer)
        child = self.edit_of(client, parent, sandbox_route)
        child_page = client.get(child.get_absolute_url()).content.decode()
        assert 'data-testid="lineage"' in child_page
        assert parent.request.get_absolute_url() in child_page
        parent_page = client.get(parent.request.get_absolute_url()).content.decode()
        assert child.get_absolute_url() in parent_page

        output = self.finish(child, source_image())
        page = client.get(child.get_absolute_url()).content.decode()
        assert "Compared with the parent" in page
        assert parent.get_absolute_url() in page and output.get_absolute_url() in page
        assert 'data-testid="inputs"' in page
        assert child.mask_input.get_absolute_url() in page

    def test_an_edit_that_kept_to_the_mask_shows_no_drift(self, client, designer, sandbox_route):
        parent = make_output(designer, sandbox_route)
        client.force_login(designer)
        child = self.edit_of(client, parent, sandbox_route)
        edited = source_image()
        edited.paste((255, 255, 0), (300, 350, 700, 600))  # inside the hole only
        output = self.finish(child, edited)
        assert output.drift_ratio == 0 and not output.drift_flagged
        page = client.get(child.get_absolute_url()).content.decode()
        assert 'data-testid="drift-figure">0.0%' in page
        assert "The edit kept to the mask." in page

    def test_an_edit_that_ignored_the_mask_is_flagged_with_a_heatmap(
        self, client, designer, other_designer, sandbox_route
    ):
        parent = make_output(designer, sandbox_route)
        client.force_login(designer)
        child = self.edit_of(client, parent, sandbox_route)
        changed = Image.blend(source_image(), Image.new("RGB", (1024, 1024), (90, 200, 120)), 0.4)
        output = self.finish(child, changed)
        assert output.drift_ratio > 0.5 and output.drift_flagged
        page = client.get(child.get_absolute_url()).content.decode()
        assert f'data-testid="drift-figure">{output.drift_percent:.1f}%' in page
        assert "the route may have ignored the mask" in page

        heatmap = client.get(reverse("studio:output-drift", args=[output.id]))
        assert heatmap["Content-Type"] == "image/png"
        with Image.open(io.BytesIO(heatmap.content)) as image:
            red = image.convert("RGB").getpixel((20, 20))
            assert red[0] > 150 and red[1] < 100  # protected and changed: red
        client.force_login(other_designer)
        assert client.get(reverse("studio:output-drift", args=[output.id])).status_code == 404

    def test_an_edit_without_a_mask_has_no_drift_figure(self, client, designer, sandbox_route):
        parent = make_output(designer, sandbox_route)
        client.force_login(designer)
        child = self.edit_of(client, parent, sandbox_route, mask=False)
        output = self.finish(child, Image.new("RGB", (1024, 1024), "white"))
        assert output.drift_ratio is None
        assert 'data-testid="drift"' not in client.get(child.get_absolute_url()).content.decode()
        response = client.get(reverse("studio:output-drift", args=[output.id]))
        assert response.status_code == 404


def test_the_edit_form_never_reads_files_for_a_preview(designer, sandbox_route):
    form = EditForm(
        {**SETTINGS, "route": sandbox_route.pk, "prompt": PROMPT},
        {"source": upload("x.png", b"not an image")},
        user=designer,
        for_preview=True,
    )
    form.is_valid()
    assert "source" not in form.errors


def test_a_route_that_does_not_take_edits_is_refused(client, designer, sandbox_route):
    Route.objects.filter(pk=sandbox_route.pk).update(supports_edits=False)
    client.force_login(designer)
    response = post_edit(client, sandbox_route, good_files())
    assert "does not take edits" in response.context["form"].errors["route"][0]
