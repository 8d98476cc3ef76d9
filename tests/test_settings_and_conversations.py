import json
import math

import numpy as np
import pytest

from args_local.conversations import parse_hh_dialogue, read_preference_pairs, split_reply
from args_local.engine import as_messages
from args_local.errors import UserError
from args_local.settings import DecodingSettings


@pytest.mark.parametrize("changes, words", [
    ({"k": 0}, "k must be at least 1"),
    ({"temperature": -0.5}, "temperature"),
    ({"temperature": math.inf}, "temperature must be a finite number"),  # it said >= 0 of inf
    ({"w": math.nan}, "finite"),
    ({"w": math.inf}, "finite"),
    ({"mode": "beam"}, "unknown mode"),
    # from Python, as they were passed: these said max-new-tokens, top-p..., neither the field nor the option
    ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"),
    ({"top_p": -0.1}, r"top_p must be in \[0, 1\]"),
    ({"top_p": 1.5}, r"top_p must be in \[0, 1\]"),
    ({"repeat_penalty": 0}, "repeat_penalty must be a positive number"),
    ({"no_repeat_ngram": 1}, "no_repeat_ngram must be 0"),
    ({"min_p": 1}, r"min_p must be in \[0, 1\)"),
    ({"max_new_tokens": 8.0}, "max_new_tokens must be an integer"),
])
def test_invalid_settings_name_the_field(changes, words):
    with pytest.raises(UserError, match=words):
        DecodingSettings(**changes).validated()


@pytest.mark.parametrize("objectives, words", [
    (None, "objectives must be name-weight pairs"),  # a TypeError: 'NoneType' object is not iterable
    ("helpful=1", "objectives must be name-weight pairs"),  # the command line's form
    ({"helpful": True}, "the weight of objective 'helpful' must be a finite number"),
    ({"helpful": "1"}, "the weight of objective 'helpful' must be a finite number"),
])
def test_objectives_of_another_shape_or_type_are_a_user_error(objectives, words):
    with pytest.raises(UserError, match=words):
        DecodingSettings(objectives=objectives).validated()


def test_numbers_from_numpy_and_pairs_from_json_are_taken_and_reported_as_python_numbers():
    """A weight of np.float32 was 'not a finite number >= 0'; a k from np.arange decoded, and then
    json.dumps(finished.to_dict()) failed on its int64; [["helpful", 1]] (JSON, YAML) was no pair."""
    settings = DecodingSettings(k=np.arange(5, 10)[0], w=np.float32(1.5), seed=np.uint8(3), temperature=1,
                                objectives={"helpful": np.float32(1), "harmless": np.int64(0)}).validated()
    assert json.loads(json.dumps(settings.to_dict())) == {**DecodingSettings().to_dict(), "k": 5, "w": 1.5, "seed": 3,
                                                          "objectives": {"helpful": 1.0, "harmless": 0.0}}
    assert DecodingSettings(objectives=[["helpful", 1], ["harmless", 0.5]]) == \
        DecodingSettings(objectives={"helpful": 1.0, "harmless": 0.5})


def test_a_stop_string_that_is_not_unicode_is_refused_from_python_as_elsewhere():
    # the command line and the server refused it; from Python it was taken, and never matched
    with pytest.raises(UserError, match="a stop string is not valid UTF-8 text"):
        DecodingSettings(stop=["###", "end\udcff"]).validated()


def test_k_above_the_vocabulary_is_refused():
    with pytest.raises(UserError, match="vocabulary size 100"):
        DecodingSettings(k=101).validated(vocab_size=100)


@pytest.mark.parametrize("message", [
    {"role": "user", "content": None},
    {"role": "user"},
    {"content": "Hi"},
    {"role": "user", "content": [{"type": "text", "text": "Hi"}]},  # OpenAI's parts: the server's to join
    "Hi",
    {"role": "human", "content": "Hi"},  # these two went to the template as they were
    {"role": "User", "content": "Hi"},
])
def test_a_malformed_message_from_python_is_a_user_error_naming_it(message):
    with pytest.raises(UserError, match="message 2 of the prompt is not {'role': 'system', 'user' or 'assistant'"):
        as_messages([{"role": "system", "content": "Be brief."}, message], system="Be kind.")


def test_a_prompt_without_a_user_message_is_a_user_error():
    # the system prompt alone was answered as if it had been asked
    with pytest.raises(UserError, match="the prompt has no user message"):
        as_messages([{"role": "system", "content": "Be brief."}])
    with pytest.raises(UserError, match="the prompt has no user message"):
        as_messages([{"role": "assistant", "content": "Hello!"}], system="Be kind.")


def test_hh_dialogue_parses_into_turns():
    messages = parse_hh_dialogue("\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Why?\n\nAssistant: Because.")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    conversation, reply = split_reply(messages)
    assert reply == "Because." and conversation[-1]["content"] == "Why?"


def test_preference_file_with_a_bad_line_names_it(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"chosen": "\\n\\nHuman: a\\n\\nAssistant: b", "rejected": "\\n\\nHuman: a\\n\\nAssistant: c"}\n{oops\n')
    with pytest.raises(UserError, match=r"pairs.jsonl:2"):
        read_preference_pairs(path)


def test_real_pairs_split_one_in_five_into_dev(hh_pairs):
    pairs = read_preference_pairs(hh_pairs)
    assert len(pairs) == 1926
    assert sum(p.split == "dev" for p in pairs) == 385
    assert all(p.chosen and p.rejected and p.conversation[-1]["role"] == "user" for p in pairs[:50])
