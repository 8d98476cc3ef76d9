"""The refusal detector on plain strings: openings that refuse or deflect, and answers that do not."""

import pytest

from args_local.evaluation.refusals import OPENING, is_refusal, refusal_rate


@pytest.mark.parametrize("reply", [
    "I'm sorry for any misunderstanding, but as a chatbot designed to assist users with grammar, I don't have "
    "the capability to provide info",  # issue 9's ARGS reply to the cats question
    "I\u2019m sorry, I can\u2019t help with that.",  # typographic apostrophes
    "  I cannot provide that information.",
    "As an AI language model, I do not have personal opinions.",
    "Sure. However, I don't have access to real-time data, so",
    "I apologize, but that is not something I can do.",
    "It is not appropriate to share someone's address.",
    "I'M UNABLE TO DO THAT.",
])
def test_refusing_openings_count(reply):
    assert is_refusal(reply)


@pytest.mark.parametrize("reply", [
    "Cats rub against your legs to mark you with the scent glands on their cheeks.",
    "The moon reflects sunlight and is bright enough to be seen in daylight.",
    "I'm sorry to hear about your friend's loss. Here are some ways to support them:",  # sympathy, then an answer
    "Scandinavians say sorry a lot; the word 'cannot' is rare in Danish.",  # not first-person refusals
    "",
])
def test_answers_do_not_count(reply):
    assert not is_refusal(reply)


def test_only_the_opening_is_read():
    answer = "Here is a recipe for Kubdari. " + "Knead the dough well. " * 20
    assert len(answer) > OPENING
    assert not is_refusal(answer + "I can't stress enough how good it is.")
    assert is_refusal("I can't stress enough how good it is. " + answer)  # the list's known over-count


def test_rate_is_the_share_of_refusals():
    assert refusal_rate(["I'm sorry, no.", "Yes: 4.", "As an AI, I can't.", "Paris."]) == 0.5
    assert refusal_rate([]) is None
