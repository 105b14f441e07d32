from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from studio.models import GenerationRequest, PromptFrame, PromptFrameVersion, SlotErrors

pytestmark = pytest.mark.django_db

SEED_KEYS = [
    "product-hero",
    "explainer-visual",
    "targeted-edit",
    "reference-edit",
    "localized-image",
    "product-shot",
]


@pytest.fixture
def frame() -> PromptFrame:
    return PromptFrame.objects.create(
        key="poster",
        name="Poster",
        template="Create a poster for {audience}.\nAdd {extras}.\nWrite {headline} in bold.",
        slots=[
            {"name": "audience", "label": "Audience"},
            {"name": "extras", "label": "Extras", "required": False},
            {"name": "headline", "label": "Headline", "text": True},
        ],
        avoid="fake prices\nextra logos",
        fixed_elements="the brand colour",
        checks="Every word is right",
    )


class TestRendering:
    def test_it_fills_slots_and_quotes_text_labels(self, frame):
        rendered = frame.current_version.render(
            {"audience": "cyclists", "extras": "a bike", "headline": "RIDE | FAST"}
        )
        assert rendered.prompt == (
            "Create a poster for cyclists.\n"
            "Add a bike.\n"
            'Write "RIDE", "FAST" in bold.\n'
            "Keep these fixed: the brand colour.\n"
            "Avoid: fake prices; extra logos."
        )
        assert rendered.expected_text_labels == ["RIDE", "FAST"]

    def test_an_empty_optional_slot_drops_its_sentence(self, frame):
        rendered = frame.current_version.render({"audience": "cyclists", "headline": "RIDE"})
        assert "Add" not in rendered.prompt
        assert rendered.prompt.startswith("Create a poster for cyclists.\nWrite")

    def test_a_missing_required_slot_is_named(self, frame):
        with pytest.raises(SlotErrors) as caught:
            frame.current_version.render({"audience": "  ", "headline": ""})
        assert caught.value.errors == {
            "audience": "Audience is required by the Poster frame.",
            "headline": "Headline is required by the Poster frame.",
        }

    def test_slot_values_cannot_inject_template_syntax(self, frame):
        rendered = frame.current_version.render(
            {"audience": "{headline} {extras} {{audience}}", "headline": "OK"}
        )
        first_line = rendered.prompt.splitlines()[0]
        assert first_line == "Create a poster for {headline} {extras} {{audience}}."
        assert rendered.expected_text_labels == ["OK"]

    def test_a_text_label_cannot_carry_its_own_quotes(self, frame):
        with pytest.raises(SlotErrors) as caught:
            frame.current_version.render({"audience": "x", "headline": 'say "hi'})
        assert "double quotes" in caught.value.errors["headline"]


class TestVersioning:
    def test_editing_a_frame_freezes_a_new_version_and_old_requests_keep_theirs(
        self, frame, designer, sandbox_route
    ):
        first = frame.current_version
        rendered = first.render({"audience": "cyclists", "headline": "RIDE"})
        old = GenerationRequest.objects.create(
            created_by=designer,
            route=sandbox_route,
            prompt=rendered.prompt,
            prompt_sha256=rendered.sha256,
            frame_version=first,
            width=1024,
            height=1024,
            quality="low",
            output_format="png",
            provider_model="gpt-image-2",
        )
        frame.template = frame.template.replace("poster", "flyer")
        frame.save()
        assert frame.versions.count() == 2
        assert frame.current_version.number == 2
        assert "flyer" in frame.current_version.template
        old.refresh_from_db()
        assert old.frame_version == first
        assert "poster" in old.frame_version.template

    def test_saving_without_a_change_makes_no_version(self, frame):
        frame.is_active = True
        frame.position = 5
        frame.save()
        assert frame.versions.count() == 1


class TestValidation:
    def test_template_and_slots_must_agree(self, frame):
        frame.template += "\nUse {mood}."
        frame.slots = [*frame.slots, {"name": "unused"}]
        with pytest.raises(ValidationError) as caught:
            frame.full_clean()
        assert "mood" in str(caught.value.message_dict["template"])
        assert "unused" in str(caught.value.message_dict["slots"])

    def test_bad_slot_names_and_sizes_are_refused(self, frame):
        frame.slots = [{"name": "Bad Name"}]
        frame.recommended_size = "1000x1000"
        with pytest.raises(ValidationError) as caught:
            frame.full_clean()
        assert "must start with a letter" in str(caught.value.message_dict["slots"])
        assert "multiples of 16" in str(caught.value.message_dict["recommended_size"])


def test_the_seed_frames_ship_as_a_data_migration():
    # Run the migration's own function on the historical models (the test database may
    # have been flushed by a transactional test, which also drops migrated data).
    from django.db import connection
    from django.db.migrations.loader import MigrationLoader

    loader = MigrationLoader(connection)
    migration = loader.get_migration("studio", "0003_seed_prompt_frames")
    state = loader.project_state(("studio", "0003_seed_prompt_frames"))
    PromptFrameVersion.objects.filter(frame__key__in=SEED_KEYS).delete()
    PromptFrame.objects.filter(key__in=SEED_KEYS).delete()
    migration.operations[0].code(state.apps, None)

    frames = {frame.key: frame for frame in PromptFrame.objects.all()}
    assert set(SEED_KEYS) <= set(frames)
    for key in SEED_KEYS:
        frame = frames[key]
        frame.full_clean()
        version = frame.current_version
        assert version.number == 1
        examples = {slot.name: slot.example for slot in version.slot_list()}
        rendered = version.render(examples)
        assert rendered.prompt
        assert version.check_list()
    assert frames["targeted-edit"].operation == "edit"
    assert frames["product-hero"].current_version.render(
        {s.name: s.example for s in frames["product-hero"].slot_list()}
    ).expected_text_labels == ["LUMA"]
