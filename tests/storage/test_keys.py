import pytest

from pony_tasks.storage.keys import InvalidKeyError, validate_key, validate_prefix


@pytest.mark.parametrize(
    "key",
    ["images/ab/cd/abcdef.png", "a", "shards/openclip-vit-b-32/000001.npy", "ünïcode/ok.txt", "with space/x y.jpg"],
)
def test_safe_keys_pass_unchanged(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../escape",
        "a/../../escape",
        "a/..",
        "./a",
        "/etc/passwd",
        "C:/windows",
        "a\\..\\b",
        "a//b",
        "trailing/",
        "nul\x00byte",
        "line\nbreak",
        "del\x7f",
        ".pony-incoming/put-123",
        "x" * 1025,
        "cafe\u0301",  # not NFC
    ],
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKeyError):
        validate_key(key)


def test_prefixes_may_be_empty_or_end_in_slash_but_not_escape() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("images/") == "images/"
    with pytest.raises(InvalidKeyError):
        validate_prefix("../")
