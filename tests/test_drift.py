"""The drift check: changes inside the mask are free; changes outside it are measured."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw, ImageOps

from studio import drift
from tests.edit_fixtures import HOLE, mask_image, source_image


def reencoded(image: Image.Image, pillow_format: str, **options) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, pillow_format, **options)
    return drift.open_image(buffer.getvalue())


def edited_inside(source: Image.Image, hole: tuple = HOLE) -> Image.Image:
    edited = source.copy()
    ImageDraw.Draw(edited).rectangle(hole, fill=(250, 230, 20))
    return edited


def test_an_edit_inside_the_mask_has_no_drift():
    source = source_image()
    result = drift.measure(source, mask_image(), edited_inside(source))
    assert result.ratio == 0
    assert result.protected_cells > 0


def test_compression_noise_stays_well_under_the_threshold():
    source = source_image()
    for pillow_format, quality in (("JPEG", 75), ("WEBP", 80), ("JPEG", 50)):
        output = reencoded(edited_inside(source), pillow_format, quality=quality)
        ratio = drift.measure(source, mask_image(), output).ratio
        assert ratio < drift.DRIFT_THRESHOLD / 2, (pillow_format, quality, ratio)


def test_a_change_outside_the_mask_is_measured_as_its_share():
    source = source_image()
    edited = edited_inside(source)
    # A band across the top: 1024x128 of the protected 1024x1024 - 512x320 pixels.
    ImageDraw.Draw(edited).rectangle((0, 0, 1023, 127), fill=(0, 255, 0))
    ratio = drift.measure(source, mask_image(), edited).ratio
    protected = 1024 * 1024 - 512 * 320
    assert abs(ratio - 1024 * 128 / protected) < 0.02
    assert ratio > drift.DRIFT_THRESHOLD


def test_a_route_that_ignored_the_mask_drifts_far_above_the_threshold():
    source = source_image()
    tinted = Image.blend(source, Image.new("RGB", source.size, (120, 200, 160)), 0.3)
    assert drift.measure(source, mask_image(), tinted).ratio > 0.5


def test_the_seam_next_to_the_edit_does_not_count():
    source = source_image()
    edited = edited_inside(source, (HOLE[0] - 3, HOLE[1] - 3, HOLE[2] + 2, HOLE[3] + 2))
    assert drift.measure(source, mask_image(), edited).ratio == 0


def test_a_mask_that_protects_nothing_has_no_ratio():
    source = source_image()
    everything = Image.new("RGBA", source.size, (0, 0, 0, 0))
    assert drift.measure(source, everything, Image.new("RGB", source.size)).ratio is None


def test_an_output_of_another_shape_is_compared_with_the_source_cropped_to_it():
    source = source_image(1000, 750)
    mask = mask_image(1000, 750, (100, 100, 300, 300))
    output = ImageOps.fit(source, (992, 752), method=Image.Resampling.LANCZOS)
    assert drift.measure(source, mask, output).ratio == 0


def test_the_heatmap_shows_changes_in_red_and_the_editable_area_in_blue():
    source = source_image()
    edited = edited_inside(source)
    ImageDraw.Draw(edited).rectangle((0, 0, 1023, 127), fill=(0, 255, 0))
    result = drift.measure(source, mask_image(), edited)
    heatmap = drift.heatmap(result, edited)
    assert max(heatmap.size) == drift.HEATMAP_EDGE
    scale = heatmap.width / 1024
    red, green, blue = heatmap.getpixel((int(500 * scale), int(40 * scale)))
    assert red > 150 and green < 80 and blue < 80
    red, green, blue = heatmap.getpixel((int(500 * scale), int(480 * scale)))
    assert blue > red
    red, green, blue = heatmap.getpixel((int(900 * scale), int(900 * scale)))
    assert abs(red - green) < 10 and abs(green - blue) < 10  # unchanged: grey


def test_flagging_follows_the_threshold(db, designer, sandbox_route):
    from tests.test_edits import make_output

    output = make_output(designer, sandbox_route)
    output.record_drift(drift.DRIFT_THRESHOLD + 0.01)
    output.refresh_from_db()
    assert output.drift_flagged
    output.record_drift(drift.DRIFT_THRESHOLD - 0.01)
    output.refresh_from_db()
    assert not output.drift_flagged
