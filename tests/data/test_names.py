"""The lossless text form of file names (aigi.data.names)."""

from __future__ import annotations

import random

import pytest

from aigi.data.names import markup_name, name_to_text, text_to_name, text_to_path


@pytest.mark.parametrize(
    "name, text",
    [
        ("a.jpg", "a.jpg"),
        ("photo é 日本.png", "photo é 日本.png"),
        ("b_\udcff.jpg", "b_\\xff.jpg"),
        ("a\\xff", "a\\\\xff"),  # a real backslash-x-f-f is not read back as byte 0xff
        ("a\\b", "a\\b"),  # other backslashes stay single
        ("x\\", "x\\"),
        ("lone\ud800", "lone\\ud800"),
        ("a\\\udcff", "a\\\\\\xff"),
    ],
)
def test_known_forms(name, text):
    assert name_to_text(name) == text
    assert text_to_name(text) == name


def test_bytes_and_paths_are_accepted():
    assert name_to_text(b"b_\xff.jpg") == "b_\\xff.jpg"
    assert text_to_path("d/b_\\xff.jpg").name == "b_\udcff.jpg"


def test_round_trip_on_random_names_of_the_escape_characters():
    alphabet = ["\\", "x", "u", "d", "8", "f", "a", "\udcff", "\udc80", "\ud800", "é", "/", "[", "]"]
    rng = random.Random(0)
    for _ in range(5000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        text = name_to_text(name)
        text.encode("utf-8")  # always writable
        assert text_to_name(text) == name, (name, text)


def test_markup_name_escapes_brackets():
    assert markup_name("[red]x") == "\\[red]x"


def test_wrong_types_are_clear_errors():
    with pytest.raises(TypeError, match="str"):
        text_to_name(b"x")  # type: ignore[arg-type]
