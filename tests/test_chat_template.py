"""Chat templates: the layout an input format reads off one reproduces the template's own text, and
a template whose turns depend on their position is refused rather than followed wrongly."""

from __future__ import annotations

import pytest

from args_local.chat_template import compile_chat_template
from args_local.errors import UserError
from args_local.formats import InputFormat
from args_local.policy import LlamaPolicy

GEMMA_LIKE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>"
              "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>\n"
              "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
# marks the last message: a turn's text depends on where it stands
POSITIONAL = ("{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['role'] }}: {{ m['content'] }}\n"
              "{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")


# Templates written here, each with one layout trait of a common reward-model base (the real
# templates were checked against transformers once and are not copied into the project):
# (template, bos_token, eos_token)
TRAITS = {
    "header tokens, BOS, contents trimmed": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}", "<|bos|>", "<|eot_id|>"),
    "a dated system header even without a system message": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] | trim %}"
        "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
        "{% if date_string is not defined %}{% set date_string = '1 Jan 2025' %}{% endif %}"
        "<|start_header_id|>system<|end_header_id|>\n\nToday: {{ date_string }}\n\n{{ system }}<|eot_id|>"
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}"
        "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}",
        "<|bos|>", "<|eot_id|>"),
    "a default system prompt": (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}", "", "<|im_end|>"),
    "the system prompt inside the last user turn, EOS after each reply": (
        "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
        "{% set messages = messages[1:] %}{% endif %}{% for m in messages %}{% if m['role'] == 'user' %}"
        "{% if loop.last and system is defined %}[INST] {{ system }}\n\n{{ m['content'] }}[/INST]"
        "{% else %}[INST] {{ m['content'] }}[/INST]{% endif %}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}"
        "{% endfor %}", "<s>", "</s>"),
    "a renamed role, no system role, contents trimmed": (
        "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
        + GEMMA_LIKE, "<bos>", "<eos>"),
    "role tags, EOS only after a finished conversation": (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% else %}{{ eos_token }}{% endif %}", "<s>", "<|endoftext|>"),
}


def dialogue(n: int, pad: str = "") -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{pad}message {i}, with  spaces{pad}"}
            for i in range(n)]


def transformers_render(template: dict):
    """apply_chat_template of a tokenizer carrying the template: what the reward model was trained on."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")),
                                        bos_token=template["bos_token"] or None, eos_token=template["eos_token"])
    tokenizer.chat_template = template["template"]
    return lambda messages, gen=True: tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


@pytest.fixture(scope="module")
def smollm2_template(policy_path):
    policy = LlamaPolicy(policy_path, n_ctx=256, n_threads=1)
    return lambda messages, gen=True: policy.render_chat(messages, gen)


@pytest.mark.parametrize("turns", [1, 3, 5])
def test_the_layout_of_the_policys_own_template_writes_what_the_template_writes(smollm2_template, turns):
    """SmolLM2's GGUF template adds a default system prompt: it lands before the first turn."""
    fmt = InputFormat.from_chat_template(smollm2_template)
    assert "You are a helpful AI assistant" in fmt.before["first"]
    assert fmt.context_text(dialogue(turns)) + fmt.reply_prefix == smollm2_template(dialogue(turns))
    finished = dialogue(turns + 1)
    assert fmt.context_text(finished) + fmt.reply_suffix == smollm2_template(finished, False)


def test_bos_and_renamed_roles_come_from_the_template():
    render = compile_chat_template(GEMMA_LIKE, bos_token="<bos>")
    fmt = InputFormat.from_chat_template(render)
    assert fmt.before["first"] == "<bos><start_of_turn>user\n"
    assert fmt.reply_prefix == fmt.before["assistant"] == "<end_of_turn>\n<start_of_turn>model\n"
    assert fmt.reply_suffix == "<end_of_turn>\n"
    assert InputFormat.from_dict(fmt.to_dict()) == fmt  # what the manifest stores reads back the same


def test_a_template_that_marks_a_turn_by_its_position_is_refused():
    with pytest.raises(UserError, match="depending on where it stands"):
        InputFormat.from_chat_template(compile_chat_template(POSITIONAL))


@pytest.mark.parametrize("trait", TRAITS)
def test_the_layout_of_a_template_writes_what_transformers_writes(trait):
    """1, 3 and 5 turns, contents with and without surrounding whitespace (some templates strip it),
    a reply to come and a finished one; a system message is dropped, as if none had been given."""
    source, bos, eos = TRAITS[trait]
    theirs = transformers_render({"template": source, "bos_token": bos, "eos_token": eos})
    fmt = InputFormat.from_chat_template(compile_chat_template(source, bos, eos))
    assert InputFormat.from_dict(fmt.to_dict()) == fmt
    for pad in ("", " \n "):
        for turns in (1, 3, 5):
            conversation, finished = dialogue(turns, pad), dialogue(turns + 1, pad)
            assert fmt.context_text(conversation) + fmt.reply_prefix == theirs(conversation)
            assert fmt.context_text(finished) + fmt.reply_suffix == theirs(finished, False)
            with_system = [{"role": "system", "content": "Be brief."}, *conversation]
            assert fmt.context_text(with_system) == fmt.context_text(conversation)


def test_a_default_system_prompt_is_what_the_reward_model_reads_without_one():
    source, _, eos = TRAITS["a default system prompt"]
    fmt = InputFormat.from_chat_template(compile_chat_template(source, eos_token=eos))
    assert fmt.before["first"] == "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"


def test_jinja_as_transformers_runs_it_loop_controls_tojson_and_tools_none():
    """{% continue %}, transformers' tojson (no HTML escapes) and `tools is defined` (passed as None)."""
    source = ("{% for m in messages %}{% if m['role'] == 'system' %}{% continue %}{% endif %}{{ m['role'] }}: "
              "{{ m['content'] }}\n{% endfor %}{% if tools is defined %}{{ tools | tojson }}{% endif %}"
              "{{ {'a': '<&>'} | tojson }}{% if add_generation_prompt %}assistant: {% endif %}")
    conversation = dialogue(3)
    ours = compile_chat_template(source)(conversation, True)
    assert ours == transformers_render({"template": source, "bos_token": "", "eos_token": ""})(conversation)
    assert 'null{"a": "<&>"}' in ours


def test_a_template_that_strips_only_one_side_of_a_message_is_refused():
    source = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'].lstrip() }}\n{% endfor %}"
              "{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(UserError, match="whitespace around a message"):
        InputFormat.from_chat_template(compile_chat_template(source))


def test_a_generation_block_renders_its_text_as_transformers_does():
    """transformers' {% generation %} marks assistant text for training masks; the text is unchanged."""
    source = ("{% for m in messages %}<|{{ m['role'] }}|>{% if m['role'] == 'assistant' %}{% generation %}"
              "{{ m['content'] }}{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}"
              "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    conversation = dialogue(3)
    assert compile_chat_template(source)(conversation) == transformers_render(
        {"template": source, "bos_token": "", "eos_token": ""})(conversation)
    assert InputFormat.from_chat_template(compile_chat_template(source)).before["assistant"] == "<|assistant|>"
