from args_local.text_stream import TextStream


def test_a_character_split_across_tokens_is_never_shown_half():
    stream = TextStream()
    data = "café 🙂".encode()
    shown = [stream.feed(data[i:i + 1]) for i in range(len(data))]
    assert "".join(shown) + stream.flush() == "café 🙂"
    assert all("\ufffd" not in s for s in shown)
    assert shown[data.index("é".encode())] == ""  # first byte of é alone: held back


def test_a_character_the_last_token_left_half_is_dropped_not_shown_as_a_replacement_character():
    stream = TextStream()
    shown = stream.feed("ok 🙂".encode()[:-2])  # a reply cut by max-new-tokens inside the emoji
    assert shown + stream.flush() == "ok "
    assert stream.text == "ok "


def test_stop_string_ends_the_text_before_it():
    stream = TextStream(stop=("\nUser:",))
    out = "".join(stream.feed(t.encode()) for t in ["Hello", " there", "\n", "User", ":", " more"])
    assert out == "Hello there"
    assert stream.stopped and stream.text == "Hello there"


def test_text_that_only_looks_like_a_stop_string_is_released():
    stream = TextStream(stop=("STOP",))
    assert stream.feed(b"ST") == ""
    assert stream.feed(b"ART") == "START"
    assert stream.flush() == ""
    assert not stream.stopped
