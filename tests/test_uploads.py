"""studio.uploads: hostile files are refused with the rule's message; kept files are clean."""

from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image, ImageCms

from studio import imagerules
from studio.uploads import (
    Role,
    UploadRejected,
    check_input_count,
    read_input_image,
    read_mask,
)
from tests.edit_fixtures import (
    encoded,
    jpeg_with_gps,
    mask_png,
    png_with_html,
    png_with_text,
    refused_files,
    rotated_jpeg,
    source_image,
    source_png,
)


def read(data: bytes, name: str = "file.png", role: str = Role.SOURCE):
    return read_input_image(io.BytesIO(data), len(data), name, role)


def source():
    return read(source_png())


@pytest.mark.parametrize(
    ("case", "field", "name", "data", "message"),
    refused_files(),
    ids=[case[0] for case in refused_files()],
)
def test_each_refused_file_names_its_rule(case, field, name, data, message):
    with pytest.raises(UploadRejected) as refusal:
        if field == "mask":
            read_mask(io.BytesIO(data), len(data), name, source())
        else:
            read(data, name)
    assert message in str(refusal.value)


def test_a_51_mb_file_is_refused_without_being_read():
    class Unreadable(io.BytesIO):
        def read(self, *args):
            raise AssertionError("a file over the limit must not be read")

    with pytest.raises(UploadRejected, match="smaller than 50 MB"):
        read_input_image(Unreadable(), 51 * 2**20, "huge.png", Role.SOURCE)


def test_seventeen_images_are_too_many_and_sixteen_are_not():
    check_input_count(16)
    with pytest.raises(UploadRejected, match=r"at most 16 input images \(17 given\)"):
        check_input_count(17)


def test_a_clean_png_is_kept_pixel_for_pixel():
    checked = source()
    assert (checked.format, checked.mode, checked.width, checked.height) == (
        "png",
        "RGB",
        1024,
        1024,
    )
    with Image.open(io.BytesIO(checked.data)) as stored:
        assert stored.tobytes() == source_image().tobytes()
    assert checked.sha256 == hashlib.sha256(checked.data).hexdigest()
    assert checked.original_sha256 == hashlib.sha256(source_png()).hexdigest()


def test_text_chunks_are_not_kept():
    checked = read(png_with_text())
    assert b"secret project name" not in checked.data
    assert b"tEXt" not in checked.data and b"iTXt" not in checked.data
    with Image.open(io.BytesIO(checked.data)) as stored:
        assert "Comment" not in stored.info


def test_exif_is_dropped_after_the_orientation_is_applied():
    checked = read(rotated_jpeg(), "phone.jpg")
    assert (checked.format, checked.width, checked.height) == ("jpeg", 1024, 1536)
    with Image.open(io.BytesIO(checked.data)) as stored:
        assert stored.size == (1024, 1536)
        assert not stored.getexif()
    assert b"PhoneMaker" not in checked.data


def test_the_stored_file_ends_where_its_image_ends():
    # A JPEG may carry more after its image (MPO pictures do); re-encoding leaves it behind.
    data = encoded(source_image(), "JPEG", quality=90) + b"<html>trailer</html>"
    checked = read(data, "photo.jpg")
    assert checked.data.endswith(b"\xff\xd9")
    assert b"trailer" not in checked.data


def test_a_png_with_html_appended_is_refused_not_cleaned():
    with pytest.raises(UploadRejected, match="52 bytes after the end of its PNG image"):
        read(png_with_html())


def test_gps_is_refused_but_other_exif_is_only_dropped():
    with pytest.raises(UploadRejected, match="GPS"):
        read(jpeg_with_gps(), "holiday.jpg")
    assert b"PhoneMaker" not in read(rotated_jpeg(), "phone.jpg").data


def test_an_icc_profile_is_applied_then_dropped():
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    checked = read(encoded(source_image(), "PNG", icc_profile=icc))
    assert b"iCCP" not in checked.data
    with Image.open(io.BytesIO(checked.data)) as stored:
        # From sRGB to sRGB the colours stay, within a level of rounding.
        for point in ((0, 0), (500, 20), (40, 900)):
            kept = stored.getpixel(point)
            original = source_image().getpixel(point)
            assert all(abs(a - b) <= 1 for a, b in zip(kept, original, strict=True)), point


def test_webp_and_jpeg_sources_keep_their_format():
    assert read(encoded(source_image(), "WEBP", quality=90), "a.webp").format == "webp"
    assert read(encoded(source_image(), "JPEG", quality=90), "a.jpg").format == "jpeg"


def test_a_mask_is_kept_as_rgba_png_with_its_alpha():
    checked = read_mask(io.BytesIO(mask_png()), len(mask_png()), "mask.png", source())
    assert (checked.role, checked.format, checked.mode) == (Role.MASK, "png", "RGBA")
    with Image.open(io.BytesIO(checked.data)) as stored:
        alpha = stored.getchannel("A")
        assert alpha.getpixel((300, 400)) == 0 and alpha.getpixel((10, 10)) == 255


def test_a_mask_is_checked_against_the_source_after_its_orientation():
    portrait = read(rotated_jpeg(), "phone.jpg")  # shows as 1024x1536
    tall = mask_png(1024, 1536, (0, 0, 10, 10))
    assert read_mask(io.BytesIO(tall), len(tall), "mask.png", portrait).height == 1536
    wide = mask_png(1536, 1024, (0, 0, 10, 10))
    with pytest.raises(UploadRejected, match="mask 1536x1024, image 1024x1536"):
        read_mask(io.BytesIO(wide), len(wide), "mask.png", portrait)


def test_the_browser_gets_the_same_messages():
    rules = imagerules.rules_for_browser()
    assert rules["messages"] == imagerules.UPLOAD_MESSAGES
    assert rules["input"]["max_images"] == 16
    assert rules["mask"]["max_bytes"] == 4 * 1024 * 1024


def test_a_file_is_what_its_bytes_say_not_what_its_name_says():
    checked = read(encoded(source_image(), "JPEG", quality=90), "looks-like.png")
    assert (checked.format, checked.extension, checked.mime_type) == ("jpeg", "jpg", "image/jpeg")


def test_mangled_files_are_refused_never_crash():
    """Every byte-level mangling of a good PNG and JPEG is either read or refused with a
    message: nothing else escapes (which the view would turn into a 500)."""
    import random

    generator = random.Random(4)
    originals = [
        encoded(source_image(256, 256)),
        encoded(source_image(256, 256), "JPEG"),
        encoded(source_image(256, 256), "WEBP"),
        mask_png(256, 256, (10, 10, 50, 50)),
    ]
    first = read(originals[0])
    outcomes = {"read": 0, "refused": 0}
    for number, original in enumerate(originals):
        for _ in range(100):
            data = bytearray(original)
            for _ in range(generator.randint(1, 16)):
                data[generator.randrange(len(data))] = generator.randrange(256)
            if generator.random() < 0.3:
                data = bytes(data[: generator.randrange(4, len(data))])
            try:
                if number == 3:
                    read_mask(io.BytesIO(data), len(data), "mask.png", first)
                else:
                    read(bytes(data))
                outcomes["read"] += 1
            except UploadRejected as problem:
                assert str(problem)
                outcomes["refused"] += 1
    assert outcomes["refused"] > 0


def pixels_of(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGBA").tobytes()


def png_chunks(data: bytes) -> list[bytes]:
    import struct

    kinds, offset = [], 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        kinds.append(kind)
        offset += 12 + length
    return kinds


def test_a_png_that_needs_no_change_keeps_its_own_image_data():
    """No re-encode (issue 16: checking a 4K PNG spent 95% of its time compressing it
    again): the text chunk goes, the compressed pixels are the upload's own bytes."""
    original = png_with_text()
    checked = read(original, "notes.png")
    assert png_chunks(checked.data) == [b"IHDR", b"IDAT", b"IEND"] or set(
        png_chunks(checked.data)
    ) == {b"IHDR", b"IDAT", b"IEND"}
    idat = [chunk for chunk in png_chunks(original) if chunk == b"IDAT"]
    assert idat
    start = original.index(b"IDAT") - 4
    assert original[start : original.index(b"IEND") - 4] in checked.data
    assert pixels_of(checked.data) == pixels_of(original)


def test_a_jpeg_is_kept_without_a_second_lossy_encode():
    original = encoded(source_image(), "JPEG", quality=80)
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"  # Make: dropped with APP1, orientation 1
    with_exif = encoded(Image.open(io.BytesIO(original)), "JPEG", quality=80, exif=exif)
    checked = read(with_exif, "photo.jpg")
    assert b"PhoneMaker" not in checked.data and b"Exif" not in checked.data
    # The same decoded pixels: the entropy-coded data is the upload's own.
    assert pixels_of(checked.data) == pixels_of(with_exif)
    assert checked.data.endswith(b"\xff\xd9")


def test_a_webp_loses_its_metadata_and_keeps_its_pixels():
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    original = encoded(source_image().convert("RGBA"), "WEBP", quality=70, exif=exif)
    assert b"PhoneMaker" in original
    checked = read(original, "a.webp")
    assert b"PhoneMaker" not in checked.data and b"EXIF" not in checked.data
    assert checked.format == "webp"
    assert pixels_of(checked.data) == pixels_of(original)


def test_a_png_whose_image_data_fails_its_checksum_is_re_encoded_from_what_decoded():
    """Pillow checks the checksums of the chunks before the pixels, not of the pixel data's
    own; a file kept as sent must not carry a bad one to the provider."""
    original = bytearray(source_png())
    idat = original.index(b"IDAT")
    length = int.from_bytes(original[idat - 4 : idat], "big")
    original[idat + 4 + length] ^= 0xFF  # the image data chunk's CRC
    checked = read(bytes(original), "crc.png")
    assert bytes(original[idat + 4 : idat + 4 + length]) not in checked.data
    assert pixels_of(checked.data) == pixels_of(source_png())


def test_a_mask_that_is_already_rgba_png_is_kept_as_sent():
    mask = mask_png()
    checked = read_mask(io.BytesIO(mask), len(mask), "mask.png", source())
    assert (checked.format, checked.mode) == ("png", "RGBA")
    assert pixels_of(checked.data) == pixels_of(mask)
