from __future__ import annotations

import pytest

from studio.imagerules import SIZE_PRESETS, parse_size, size_problems


def test_it_accepts_the_standard_sizes_and_every_preset():
    for size, _label in SIZE_PRESETS:
        assert size_problems(*parse_size(size)) == [], size


@pytest.mark.parametrize(
    ("width", "height", "broken"),
    [
        # Both edges multiples of 16.
        (1024, 1040, None),
        (1024, 1032, "multiples of 16"),
        (1032, 1024, "multiples of 16"),
        # Longest edge at most 3840 (3840x2160 is the largest legal frame).
        (3840, 2160, None),
        (3856, 1600, "at most 3840"),
        # Long/short at most 3: 2400x800 is exactly 3, 2416x800 is over.
        (2400, 800, None),
        (800, 2400, None),
        (2416, 800, "3 times"),
        (800, 2416, "3 times"),
        # At least 655,360 pixels: 1024x640 is exactly the minimum.
        (1024, 640, None),
        (1024, 624, "at least 655,360"),
        # At most 8,294,400 pixels: 2880x2880 is exactly the maximum.
        (2880, 2880, None),
        (2896, 2880, "at most 8,294,400"),
    ],
)
def test_each_rule_on_both_sides_of_its_boundary(width, height, broken):
    problems = size_problems(width, height)
    if broken is None:
        assert problems == []
    else:
        assert len(problems) == 1, problems
        assert broken in problems[0]


def test_it_reports_every_broken_rule_at_once():
    problems = size_problems(4000, 8)
    assert len(problems) == 4
    assert any("multiples of 16" in p for p in problems)
    assert any("at most 3840" in p for p in problems)
    assert any("3 times" in p for p in problems)
    assert any("at least 655,360" in p for p in problems)


def test_it_refuses_non_positive_sizes():
    assert size_problems(0, 1024) == ["Width and height must be positive whole numbers of pixels."]


@pytest.mark.parametrize(
    "text", ["1024", "1024x", "x1024", "10.5x1024", "auto", "", "1024\u00d71024"]
)
def test_parse_size_rejects_what_is_not_width_x_height(text):
    assert parse_size(text) is None


def test_parse_size_reads_width_then_height():
    assert parse_size("1536x864") == (1536, 864)
