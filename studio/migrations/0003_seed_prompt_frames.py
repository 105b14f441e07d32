"""The six prompt frames from the seeds ("Reusable Prompt Frames", "Prompt and Edit Loop").

Frozen here as data: later edits in the admin create new versions and leave these intact.
"""

from django.db import migrations

FRAMES = [
    {
        "key": "product-hero",
        "position": 10,
        "name": "Product hero",
        "purpose": "A hero image for a product page or campaign, without invented claims.",
        "operation": "generate",
        "template": (
            "Create {asset_type} for {audience}.\n"
            "Show {subject}.\n"
            "Keep {fixed_details}.\n"
            "Use {lighting_background}.\n"
            "Render the headline {headline} exactly as written.\n"
            "Avoid {avoid}."
        ),
        "slots": [
            {"name": "asset_type", "label": "Asset type", "example": "a landing-page hero image"},
            {"name": "audience", "label": "Audience", "example": "busy home-office workers"},
            {"name": "subject", "label": "Subject", "example": "a matte black desk lamp"},
            {"name": "fixed_details", "label": "Fixed details", "required": False,
             "help": "What must stay exactly as the product is.",
             "example": "the lamp's shape and the brass switch"},
            {"name": "lighting_background", "label": "Lighting and background",
             "example": "soft daylight on a pale gray background"},
            {"name": "headline", "label": "Headline", "required": False, "text": True,
             "help": "Words that must appear in the image. One label per line.",
             "example": "LUMA"},
            {"name": "avoid", "label": "Avoid", "required": False,
             "example": "extra logos and price tags"},
        ],
        "fixed_elements": "",
        "avoid": "invented brand claims, prices or UI text",
        "checks": "Shape, shadows, brand elements, crop\nEvery rendered word is exactly right",
        "recommended_size": "1536x1024",
        "recommended_quality": "medium",
        "recommended_format": "png",
    },
    {
        "key": "explainer-visual",
        "position": 20,
        "name": "Explainer visual / UI diagram",
        "purpose": "A diagram or UI explainer with short, readable labels.",
        "operation": "generate",
        "template": (
            "Build a diagram with {nodes}.\n"
            "Connect them with {arrows}.\n"
            "Label them {labels}.\n"
            "Lay it out as {layout}.\n"
            "Keep labels short and readable."
        ),
        "slots": [
            {"name": "nodes", "label": "Nodes", "help": "Three to five nodes.",
             "example": "four rounded boxes in a row"},
            {"name": "arrows", "label": "Arrows", "example": "left-to-right arrows"},
            {"name": "labels", "label": "Labels", "text": True,
             "help": "One label per line (or separated by |); each must appear exactly.",
             "example": "Upload | Review | Approve | Publish"},
            {"name": "layout", "label": "Panels and hierarchy", "required": False,
             "example": "a single panel with generous whitespace"},
        ],
        "fixed_elements": "",
        "avoid": "paragraph-length copy in the image",
        "checks": "Text accuracy\nStructural readability",
        "recommended_size": "1536x1024",
        "recommended_quality": "medium",
        "recommended_format": "png",
    },
    {
        "key": "targeted-edit",
        "position": 30,
        "name": "Targeted edit",
        "purpose": "Change one region of an existing image and nothing else.",
        "operation": "edit",
        "template": (
            "Preserve {fixed}.\n"
            "Change only {region} to {new_detail}.\n"
            "Do not alter {protected}."
        ),
        "slots": [
            {"name": "fixed", "label": "Fixed subject, angle or text",
             "example": "the product, its angle and its label"},
            {"name": "region", "label": "Region to change", "example": "the background"},
            {"name": "new_detail", "label": "New detail", "example": "a clean studio surface"},
            {"name": "protected", "label": "Protected parts", "required": False,
             "example": "the shadows under the product"},
        ],
        "fixed_elements": "",
        "avoid": "changing style, subject, composition and text in one pass",
        "checks": "Whether the subject, angle or text changed incorrectly",
        "recommended_size": "1536x1024",
        "recommended_quality": "medium",
        "recommended_format": "png",
    },
    {
        "key": "reference-edit",
        "position": 40,
        "name": "Reference edit",
        "purpose": "Use reference images; keep what must stay fixed, change one region.",
        "operation": "edit",
        "template": (
            "Use the reference images.\n"
            "Keep {fixed} exactly as they are.\n"
            "Change only {region}: {change}."
        ),
        "slots": [
            {"name": "fixed", "label": "What stays fixed",
             "example": "the product shape, camera angle and label text"},
            {"name": "region", "label": "Region that changes", "example": "the background"},
            {"name": "change", "label": "The change", "example": "a clean studio surface"},
        ],
        "fixed_elements": "",
        "avoid": "asking for several changes at once",
        "checks": "Whether the subject, angle or text changed incorrectly",
        "recommended_size": "1536x1024",
        "recommended_quality": "medium",
        "recommended_format": "png",
    },
    {
        "key": "localized-image",
        "position": 50,
        "name": "Localized image",
        "purpose": "An image with short text in a target language and a brand footer.",
        "operation": "generate",
        "template": (
            "Create {asset_type} for {language}-speaking readers.\n"
            "Render the text {text} in {typography} typography.\n"
            "Add the brand footer {footer}.\n"
            "Keep all text short."
        ),
        "slots": [
            {"name": "asset_type", "label": "Asset type", "example": "a spring sale poster"},
            {"name": "language", "label": "Target language", "example": "German"},
            {"name": "text", "label": "Text", "text": True,
             "help": "Short text in the target language; one label per line.",
             "example": "Frühlingsangebot"},
            {"name": "typography", "label": "Typography feel", "example": "clean geometric sans"},
            {"name": "footer", "label": "Brand footer", "required": False, "text": True,
             "example": "LUMA Home"},
        ],
        "fixed_elements": "",
        "avoid": "long sentences\nmixed languages",
        "checks": "Read every word; do not trust thumbnails",
        "recommended_size": "1024x1536",
        "recommended_quality": "high",
        "recommended_format": "png",
    },
    {
        "key": "product-shot",
        "position": 60,
        "name": "Product shot",
        "purpose": "A clean product photograph for a catalogue or store.",
        "operation": "generate",
        "template": (
            "Photograph {subject} on {background}.\n"
            "Light it with {lighting}.\n"
            "Frame it for a {ratio} layout.\n"
            "Avoid {avoid}."
        ),
        "slots": [
            {"name": "subject", "label": "Subject", "example": "a ceramic coffee mug"},
            {"name": "background", "label": "Background", "example": "a warm linen tablecloth"},
            {"name": "lighting", "label": "Lighting", "example": "soft morning window light"},
            {"name": "ratio", "label": "Ratio", "example": "square"},
            {"name": "avoid", "label": "Avoid", "required": False,
             "example": "props that hide the handle"},
        ],
        "fixed_elements": "",
        "avoid": "",
        "checks": "Shape, shadows, brand elements, crop",
        "recommended_size": "1024x1024",
        "recommended_quality": "medium",
        "recommended_format": "png",
    },
]

CONTENT_FIELDS = (
    "name", "purpose", "operation", "template", "slots", "fixed_elements", "avoid",
    "checks", "recommended_size", "recommended_quality", "recommended_format",
)


def create_frames(apps, schema_editor):
    PromptFrame = apps.get_model("studio", "PromptFrame")
    PromptFrameVersion = apps.get_model("studio", "PromptFrameVersion")
    for spec in FRAMES:
        if PromptFrame.objects.filter(key=spec["key"]).exists():
            continue
        frame = PromptFrame.objects.create(**spec)
        PromptFrameVersion.objects.create(
            frame=frame, number=1, **{field: spec[field] for field in CONTENT_FIELDS}
        )


def remove_unused_frames(apps, schema_editor):
    PromptFrame = apps.get_model("studio", "PromptFrame")
    for frame in PromptFrame.objects.filter(key__in=[spec["key"] for spec in FRAMES]):
        if not frame.versions.filter(requests__isnull=False).exists():
            frame.versions.all().delete()
            frame.delete()


class Migration(migrations.Migration):
    dependencies = [("studio", "0002_frames_budgets")]
    operations = [migrations.RunPython(create_frames, remove_unused_frames)]
