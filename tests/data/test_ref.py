"""Dataset references ``source:dataset?key=value``: parsing, canonical form and helpful errors."""

from __future__ import annotations

import pytest

from tlsearch.data._ref import DatasetRef
from tlsearch.errors import BadReferenceError, UserInputError


@pytest.mark.parametrize(
    "text",
    [
        "matminer2018:dielectric_constant",
        "emt:alloys?n=500&seed=0",
        "jarvis:dft_3d?file=/data/dft_3d.json",
        "folder:/data/my_crystals",
        "folder:/data/sub/dir/with/many/parts",
        "folder:relative/path/x",
        "jarvis:dft_3d?file=/a/b/c.json&n=10",
        "emt:alloys?empty=",
    ],
)
def test_canonical_refs_round_trip_exactly(text: str) -> None:
    ref = DatasetRef.parse(text)
    assert str(ref) == text
    assert DatasetRef.parse(str(ref)) == ref


def test_parse_fields() -> None:
    ref = DatasetRef.parse("emt:alloys?seed=0&n=500")
    assert ref.source == "emt"
    assert ref.name == "alloys"
    assert ref.params == (("n", "500"), ("seed", "0"))
    assert ref.param_dict == {"n": "500", "seed": "0"}


def test_parameters_are_sorted_so_order_does_not_matter() -> None:
    a = DatasetRef.parse("emt:alloys?seed=0&n=500&b=x")
    b = DatasetRef.parse("emt:alloys?b=x&n=500&seed=0")
    assert a == b
    assert hash(a) == hash(b)
    assert str(a) == str(b) == "emt:alloys?b=x&n=500&seed=0"


def test_no_parameters() -> None:
    ref = DatasetRef.parse("matminer2018:dielectric_constant")
    assert ref.params == ()
    assert ref.param_dict == {}
    # a trailing '?' with no parameters means the same reference
    assert DatasetRef.parse("matminer2018:dielectric_constant?") == ref


def test_paths_with_slashes_and_colons() -> None:
    ref = DatasetRef.parse("folder:/data/my_crystals")
    assert (ref.source, ref.name) == ("folder", "/data/my_crystals")
    # only the first ':' separates the source
    ref = DatasetRef.parse("folder:C:/data/x")
    assert (ref.source, ref.name) == ("folder", "C:/data/x")
    assert DatasetRef.parse(str(ref)) == ref
    ref = DatasetRef.parse("jarvis:dft_3d?file=/data/dir/dft_3d.json")
    assert ref.param_dict == {"file": "/data/dir/dft_3d.json"}
    assert "file=/data/dir/dft_3d.json" in str(ref)  # slashes are not percent-encoded


@pytest.mark.parametrize(
    "value",
    ["a b", "x&y=z", "50%", "a+b", "ü/ß", "/path with space/f.json", "?q", "k=v"],
)
def test_parameter_values_with_special_characters_round_trip(value: str) -> None:
    ref = DatasetRef("jarvis", "dft_3d", (("file", value), ("n", "3")))
    again = DatasetRef.parse(str(ref))
    assert again == ref
    assert again.param_dict["file"] == value


def test_percent_encoded_input_is_decoded() -> None:
    ref = DatasetRef.parse("jarvis:dft_3d?file=/my%20data/x.json")
    assert ref.param_dict == {"file": "/my data/x.json"}
    assert DatasetRef.parse(str(ref)) == ref


def test_surrounding_whitespace_is_stripped() -> None:
    assert DatasetRef.parse(" emt :alloys ") == DatasetRef.parse("emt:alloys")


def test_refs_are_hashable_and_frozen() -> None:
    ref = DatasetRef.parse("emt:alloys?n=5")
    assert {ref: 1}[DatasetRef.parse("emt:alloys?n=5")] == 1
    with pytest.raises(AttributeError):
        ref.name = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nocolon", "source:dataset"),
        ("", "source:dataset"),
        (":x", "non-empty"),
        ("a:", "non-empty"),
        (":", "non-empty"),
        ("a:?n=1", "non-empty"),
        ("a:b?x=1&x=2", "twice"),
        ("a:b?bad", "key=value"),
        ("a:b?x=1&bad", "key=value"),
        ("a:b?x=1&&y=2", "key=value"),
        ("  :x", "non-empty"),
        ("a:   ?n=1", "non-empty"),
    ],
)
def test_invalid_refs_raise_with_helpful_text(text: str, expected: str) -> None:
    with pytest.raises(BadReferenceError) as info:
        DatasetRef.parse(text)
    message = str(info.value)
    assert expected in message
    assert repr(text) in message  # the offending reference is quoted
    assert isinstance(info.value, UserInputError)  # so the CLI reports it without a traceback


def test_missing_colon_message_shows_an_example() -> None:
    with pytest.raises(BadReferenceError, match="e.g. 'matminer2018:dielectric_constant'"):
        DatasetRef.parse("nocolon")


@pytest.mark.parametrize("value", [None, 3, b"emt:alloys"])
def test_non_string_raises_bad_reference(value: object) -> None:
    with pytest.raises(BadReferenceError):
        DatasetRef.parse(value)  # type: ignore[arg-type]
