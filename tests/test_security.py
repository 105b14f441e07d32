"""Security: CSP, CSRF with htmx, login lockout, submission floods, media headers, body limits,
and fuzzing of everything that reads outside input."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from review.forms import DecisionForm
from studio import imagegen
from studio.forms import ComposerForm
from studio.models import Attempt, GenerationRequest, OutputImage, Status
from studio.sandbox.params import InvalidRequest, read_image_request

pytestmark = pytest.mark.django_db
TEMPLATES = Path(settings.BASE_DIR) / "templates"


class TestContentSecurityPolicy:
    @pytest.mark.parametrize(
        "url", ["/accounts/login/", "/requests/new/", "/requests/", "/review/", "/audit/"]
    )
    def test_every_html_page_carries_a_strict_policy(self, client, admin_user, sandbox_route, url):
        client.force_login(admin_user)
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/html")
        policy = response["Content-Security-Policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self'" in policy
        assert "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy

    def test_no_template_has_inline_script_style_or_handlers(self):
        offences = []
        for template in TEMPLATES.rglob("*.html"):
            text = template.read_text()
            for pattern, what in [
                (r"<script(?![^>]*\bsrc=)(?![^>]*\bnonce=)[^>]*>", "inline script"),
                (r"<style(?![^>]*\bnonce=)[^>]*>", "inline style element"),
                (r"\sstyle\s*=", "style attribute"),
                (r"\son[a-z]+\s*=", "inline event handler"),
            ]:
                offences += [f"{template.name}: {what}" for _ in re.finditer(pattern, text)]
        assert offences == []

    def test_htmx_is_configured_without_eval_and_for_this_origin_only(self, client, designer):
        client.force_login(designer)
        page = client.get("/requests/").content.decode()
        assert '"allowEval": false' in page and '"selfRequestsOnly": true' in page


class TestCsrf:
    def test_an_htmx_post_without_the_token_is_refused(self, designer, sandbox_route):
        client = Client(enforce_csrf_checks=True)
        client.force_login(designer)
        response = client.post(
            reverse("studio:composer-preview"), {"prompt": "x"}, headers={"HX-Request": "true"}
        )
        assert response.status_code == 403

    def test_with_the_token_from_hx_headers_it_works(self, designer, sandbox_route):
        client = Client(enforce_csrf_checks=True)
        client.force_login(designer)
        page = client.get(reverse("studio:request-new")).content.decode()
        token = re.search(r'hx-headers=\'\{"X-CSRFToken": "([^"]+)"\}\'', page).group(1)
        response = client.post(
            reverse("studio:composer-preview"),
            {
                "prompt": "x",
                "route": sandbox_route.pk,
                "size": "1024x1024",
                "quality": "low",
                "output_format": "png",
                "background": "auto",
                "n": "1",
            },
            headers={"HX-Request": "true", "X-CSRFToken": token},
        )
        assert response.status_code == 200


class TestLoginThrottling:
    def test_repeated_failures_lock_the_account_out(self, client, designer, settings):
        settings.AXES_FAILURE_LIMIT = 3
        url = reverse("login")
        for _ in range(3):
            response = client.post(url, {"username": "dana", "password": "wrong"})
        assert response.status_code == 429
        # Even the right password is refused while the lockout lasts.
        response = client.post(url, {"username": "dana", "password": "pw-dana"})
        assert response.status_code == 429
        assert b"Too many failed logins" in response.content
        assert "_auth_user_id" not in client.session

    def test_a_good_login_still_works_below_the_limit(self, client, designer, settings):
        settings.AXES_FAILURE_LIMIT = 3
        client.post(reverse("login"), {"username": "dana", "password": "wrong"})
        response = client.post(reverse("login"), {"username": "dana", "password": "pw-dana"})
        assert response.status_code == 302


class TestSubmissionFlood:
    FORM = {
        "prompt": "poster",
        "size": "1024x1024",
        "quality": "low",
        "output_format": "png",
        "background": "auto",
        "n": "1",
    }

    def test_a_flood_gets_429_and_at_most_the_allowed_requests(
        self, client, designer, sandbox_route, settings, monkeypatch
    ):
        monkeypatch.setattr(GenerationRequest, "enqueue", lambda self, countdown=0: None)
        settings.SUBMISSIONS_PER_MINUTE = 3
        client.force_login(designer)
        statuses = [
            client.post(
                reverse("studio:request-new"), {**self.FORM, "route": sandbox_route.pk}
            ).status_code
            for _ in range(6)
        ]
        assert statuses == [302, 302, 302, 429, 429, 429]
        assert GenerationRequest.objects.count() == 3
        response = client.post(
            reverse("studio:request-new"), {**self.FORM, "route": sandbox_route.pk}
        )
        assert b"at most 3 a minute" in response.content


class TestMediaAndLimits:
    def _output(self, user, route, image_format: str, content: bytes) -> OutputImage:
        generation = GenerationRequest.objects.create(
            created_by=user,
            route=route,
            prompt="p",
            prompt_sha256="0" * 64,
            width=64,
            height=64,
            quality="low",
            output_format="png",
            provider_model="gpt-image-2",
            status=Status.SUCCEEDED,
        )
        output = OutputImage(
            request=generation,
            attempt=Attempt.begin(generation, route),
            sha256="0" * 64,
            bytes=len(content),
            width=64,
            height=64,
            format=image_format,
        )
        output.file.save(f"00.{image_format}", ContentFile(content), save=False)
        output.save()
        return output

    def test_images_go_out_inline_never_sniffed_never_publicly_cached(
        self, client, designer, sandbox_route
    ):
        output = self._output(designer, sandbox_route, "png", b"\x89PNG\r\n")
        client.force_login(designer)
        response = client.get(output.get_absolute_url())
        assert response["Content-Type"] == "image/png"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cache-Control"].startswith("private")
        assert response["Content-Disposition"].startswith("inline")

    def test_anything_else_is_an_attachment_never_html(self, client, designer, sandbox_route):
        output = self._output(designer, sandbox_route, "svg", b"<svg onload=alert(1)>")
        client.force_login(designer)
        response = client.get(output.get_absolute_url())
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"].startswith("attachment")
        assert response["X-Content-Type-Options"] == "nosniff"

    def test_media_is_not_a_public_directory(self, client, designer, sandbox_route):
        output = self._output(designer, sandbox_route, "png", b"\x89PNG\r\n")
        assert client.get(f"/media/{output.file.name}").status_code == 404
        client.force_login(designer)
        assert client.get(f"/media/{output.file.name}").status_code == 404

    def test_an_oversized_body_is_refused_before_it_is_read(self, client, designer):
        client.force_login(designer)
        response = client.generic(
            "POST",
            reverse("studio:request-new"),
            b"x",
            CONTENT_LENGTH=str(settings.MAX_REQUEST_BODY_BYTES + 1),
        )
        assert response.status_code == 413
        assert b"the studio accepts at most" in response.content

    def test_the_sandbox_is_off_in_production_unless_asked_for(self):
        from tests.test_settings import run_manage

        result = run_manage(
            "shell",
            "-c",
            "from django.conf import settings; print(settings.SANDBOX_ENABLED)",
            DEBUG="0",
            SECRET_KEY="x" * 60,
            ALLOWED_HOSTS="studio.example.com",
        )
        assert result.stdout.split()[-1] == "False"


FUZZ = hypothesis_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


class TestFuzz:
    @FUZZ
    @given(st.binary(max_size=4096))
    def test_decoding_provider_output_only_ever_says_invalid_output(self, payload):
        try:
            imagegen.decode_image(base64.b64encode(payload).decode())
        except imagegen.ImageGenError as error:
            assert error.reason == "invalid_output"

    @FUZZ
    @given(st.binary(max_size=2048))
    def test_the_sandbox_reads_any_body_as_a_request_or_a_400(self, body):
        try:
            read_image_request(body)
        except InvalidRequest as problem:
            assert problem.message

    @FUZZ
    @given(
        st.dictionaries(
            st.sampled_from(
                [
                    "frame",
                    "prompt",
                    "route",
                    "size",
                    "width",
                    "height",
                    "quality",
                    "output_format",
                    "output_compression",
                    "background",
                    "n",
                    "partial_images",
                    "slot_audience",
                    "action",
                ]
            ),
            st.text(max_size=40) | st.integers(-(10**6), 10**6).map(str),
            max_size=14,
        )
    )
    def test_the_composer_form_only_ever_reports_errors(self, sandbox_route, seed_frames, data):
        form = ComposerForm(data)
        form.is_valid()
        form.preview()

    @FUZZ
    @given(
        st.text(max_size=300)
        | st.binary(max_size=300).map(
            lambda b: "data:image/png;base64," + base64.b64encode(b).decode()
        )
    )
    def test_a_drawn_region_is_a_png_or_a_form_error(self, designer, sandbox_route, region):
        output = OutputImage(width=64, height=48)
        form = DecisionForm(
            {"region": region, "reason": "x"}, output=output, action="request_changes"
        )
        form.is_valid()

    @FUZZ
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(["prompt", "size", "route", "n", "frame", "width"]),
                st.text(max_size=30),
            ),
            max_size=8,
        ),
        st.binary(max_size=256),
    )
    def test_random_multipart_posts_never_500(self, designer, sandbox_route, fields, blob):
        client = Client(raise_request_exception=False)
        client.force_login(designer)
        data: dict = {}
        for name, value in fields:
            data.setdefault(name, []).append(value)
        data["upload"] = ContentFile(blob, name="x.png")
        for url in (reverse("studio:request-new"), reverse("studio:composer-preview")):
            response = client.post(url, data)
            assert response.status_code < 500, response.content[:500]


class TestUploadFuzz:
    """Random bytes, and real images cut or spliced at random, at the upload readers and the
    edit form: only UploadRejected or form errors come out, never an exception or a 500."""

    @staticmethod
    def _image_bytes(kind: str) -> bytes:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        mode = "RGBA" if kind == "PNG" else "RGB"
        Image.new(mode, (48, 32), (10, 200, 30, 0)[: len(mode)]).save(buffer, kind)
        return buffer.getvalue()

    @FUZZ
    @given(
        st.sampled_from(["PNG", "JPEG", "WEBP"]),
        st.integers(0, 400),
        st.binary(max_size=64),
        st.booleans(),
    )
    def test_the_readers_only_refuse(self, kind, cut, splice, as_mask):
        import io

        from studio import uploads

        data = self._image_bytes(kind)
        data = data[:cut] + splice + data[cut + len(splice) :]
        source = uploads.read_input_image(
            io.BytesIO(self._image_bytes("PNG")), 100, "source.png", "source"
        )
        try:
            if as_mask:
                uploads.read_mask(io.BytesIO(data), len(data), "mask.png", source)
            else:
                uploads.read_input_image(io.BytesIO(data), len(data), "x.png", "reference")
        except uploads.UploadRejected as problem:
            assert str(problem)

    @FUZZ
    @given(st.binary(max_size=512), st.binary(max_size=256), st.text(max_size=40))
    def test_random_multipart_edits_never_500(self, designer, sandbox_route, source, mask, prompt):
        from django.core.files.uploadedfile import SimpleUploadedFile

        client = Client(raise_request_exception=False)
        client.force_login(designer)
        response = client.post(
            reverse("studio:edit-new"),
            {
                "prompt": prompt,
                "route": sandbox_route.pk,
                "size": "1024x1024",
                "quality": "low",
                "output_format": "png",
                "background": "auto",
                "n": "1",
                "source": SimpleUploadedFile("s.png", source, "image/png"),
                "mask": SimpleUploadedFile("m.png", mask, "image/png"),
            },
        )
        assert response.status_code < 500, response.content[:300]
        assert not GenerationRequest.objects.exists()
