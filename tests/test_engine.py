"""The engine on the real models: the ARGS rule, stopping, caching, context limits."""

import json
import os
import time
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from args_local.engine import Engine, Finished, Notice, Step
from args_local.errors import RewardError, UserError
from args_local.settings import DecodingSettings

from .conftest import THREADS, guide_copy, run_cli

COFFEE = "How do I make a good cup of coffee?"


def steps_of(engine, prompt, settings, **kw):
    events = list(engine.stream(prompt, settings, **kw))
    return [e for e in events if isinstance(e, Step)], events[-1]


def test_every_traced_step_takes_the_best_logit_plus_w_reward(tmp_path):
    trace = tmp_path / "trace.jsonl"
    proc = run_cli("generate", COFFEE, "--mode", "args-greedy", "--k", "10", "--w", "1.5",
                   "--max-new-tokens", "24", "--threads", str(THREADS), "--trace", str(trace))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in trace.read_text().splitlines()]
    assert len(rows) >= 10
    overrides = 0
    for row in rows:
        assert len(row["candidates"]) == len(row["logits"]) == len(row["rewards"]) == 10
        scores = np.array(row["logits"]) + row["w"] * np.array(row["rewards"])
        assert row["candidates"][int(np.argmax(scores))] == row["chosen"], row["step"]
        overrides += row["chosen"] != row["candidates"][int(np.argmax(row["logits"]))]
    assert proc.stdout.strip()  # the reply was streamed to stdout


def test_w_zero_args_greedy_equals_greedy_token_for_token(engine):
    greedy = engine.generate(COFFEE, DecodingSettings(mode="greedy", max_new_tokens=40))
    args0 = engine.generate(COFFEE, DecodingSettings(mode="args-greedy", w=0.0, max_new_tokens=40))
    assert greedy.tokens == args0.tokens
    assert len(args0.rewards) == len(args0.tokens) + (args0.stop_reason == "end_of_turn")


def test_overlapping_the_reward_model_with_the_guessed_step_changes_no_token(engine):
    """The RM scores on a worker thread while llama.cpp runs the policy's favourite candidate;
    where ARGS takes another one the guess is rolled back. Both paths must give the sequential reply."""
    sequential = Engine(engine.policy, engine.reward, overlap=False)
    settings = DecodingSettings(mode="args-greedy", w=3.0, max_new_tokens=48)
    steps, overlapped = steps_of(engine, COFFEE, settings)
    assert engine.overlap
    assert any(s.chosen_index == 0 for s in steps) and any(s.chosen_index > 0 for s in steps)  # hits and misses
    alone = sequential.generate(COFFEE, settings)
    assert overlapped.tokens == alone.tokens and overlapped.rewards == alone.rewards  # from the cache it left


@pytest.mark.parametrize("mode", ["greedy", "args-greedy"])
def test_no_repeat_ngram_holds_on_the_real_policy_in_every_mode(engine, mode):
    # SmolLM2 loops on this one in both modes (guided by harmlessness alone: the helpful head
    # steers it out of the loop), so the rule has real work to do
    prompt = "List the numbers from one to fifty in words, separated by commas."
    base = DecodingSettings(mode=mode, max_new_tokens=60, repeat_penalty=1.0, objectives={"harmless": 1.0})
    free = engine.generate(prompt, base)
    guarded = engine.generate(prompt, base.with_(no_repeat_ngram=3))
    trigrams = [tuple(guarded.tokens[i:i + 3]) for i in range(len(guarded.tokens) - 2)]
    assert len(trigrams) == len(set(trigrams))
    assert len({tuple(free.tokens[i:i + 3]) for i in range(len(free.tokens) - 2)}) < len(free.tokens) - 2


def test_adaptive_skips_the_reward_only_where_the_policy_is_sure(engine):
    settings = DecodingSettings(mode="args-greedy", max_new_tokens=40, adaptive=0.5)
    steps, done = steps_of(engine, COFFEE, settings)
    scored = [s for s in steps if s.rewards is not None]
    skipped = [s for s in steps if s.rewards is None and s.token >= 0]
    assert scored and skipped and done.reward_calls == len(scored) + 1
    for s in scored:  # the ARGS rule still holds where the reward was computed
        best = np.argmax(np.array(s.logits) + settings.w * np.array(s.rewards))
        assert s.candidates[best] == s.token


def test_min_p_scores_only_plausible_candidates_and_skips_single_ones(engine):
    settings = DecodingSettings(mode="args-greedy", max_new_tokens=40, min_p=0.2)
    steps, done = steps_of(engine, COFFEE, settings)
    scored = [s for s in steps if s.rewards is not None]
    assert scored and done.reward_calls == len(scored) + 1 < len(steps) + 1  # some steps had one candidate
    for s in scored:
        assert 2 <= len(s.candidates) <= settings.k
        assert min(s.logits) >= max(s.logits) + np.log(settings.min_p) - 1e-9
        assert s.candidates[int(np.argmax(np.array(s.logits) + settings.w * np.array(s.rewards)))] == s.token


def test_large_w_changes_the_replies_and_raises_their_mean_reward(engine):
    # ARGS chooses token by token, so one reply's final reward may still fall; over prompts it rises
    prompts = [COFFEE, "Why can I see the moon during the day?", "Give me three tips for a job interview.",
               "What should I pack for a weekend hike?"]
    greedy = [engine.generate(p, DecodingSettings(mode="greedy", max_new_tokens=64)) for p in prompts]
    steered = [engine.generate(p, DecodingSettings(mode="args-greedy", w=5.0, max_new_tokens=64)) for p in prompts]
    assert all(s.tokens != g.tokens for s, g in zip(steered, greedy))
    assert np.mean([s.reward for s in steered]) > np.mean([g.reward for g in greedy])


def test_stops_at_the_end_of_the_turn(engine):
    result = engine.generate("Reply with just the word: hello", DecodingSettings(mode="greedy", max_new_tokens=60))
    assert result.stop_reason == "end_of_turn"
    assert "<|im_end|>" not in result.text and result.text.strip()


def test_stop_string_cuts_the_reply(engine):
    free = engine.generate(COFFEE, DecodingSettings(mode="greedy", max_new_tokens=30))
    word = free.text.split()[3]
    cut = engine.generate(COFFEE, DecodingSettings(mode="greedy", max_new_tokens=30, stop=(word,)))
    assert cut.stop_reason == "stop_string"
    assert cut.text == free.text[: free.text.index(word)]
    # from Python a single stop string may be given bare (as OpenAI's `stop` may): one string, not its characters
    bare = engine.generate(COFFEE, DecodingSettings(mode="greedy", max_new_tokens=30, stop=word))
    assert bare.text == cut.text and bare.settings["stop"] == [word]


@pytest.mark.parametrize("changes, words", [
    ({"k": 10.5}, "k must be an integer"),  # each of these was a TypeError deep in numpy or the engine
    ({"max_new_tokens": "8"}, "max_new_tokens must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"mode": "best-of-n", "n": 2.0}, "n must be an integer"),
    ({"no_repeat_ngram": 2.5}, "no_repeat_ngram must be an integer"),
    ({"temperature": None}, "temperature must be a number"),
    ({"w": "1"}, "w must be a number"),
    ({"stop": None}, "stop must be a string or a list of strings"),
    ({"stop": ["end", 1]}, "stop must be a string or a list of strings"),
])
def test_a_setting_of_the_wrong_type_from_python_is_a_user_error_naming_it(engine, changes, words):
    with pytest.raises(UserError, match=words):
        engine.generate(COFFEE, DecodingSettings(**{"max_new_tokens": 4, **changes}))


@pytest.mark.parametrize("prompt", [None, 42, {"role": "user", "content": "Hi"}])
def test_a_prompt_that_is_neither_text_nor_messages_is_a_user_error(engine, prompt):
    with pytest.raises(UserError, match="the prompt must be text or a list of messages"):
        engine.generate(prompt, DecodingSettings(max_new_tokens=4))


@pytest.mark.parametrize("settings", [{"max_new_tokens": 4}, {}, "greedy"])
def test_settings_that_are_not_decoding_settings_are_a_user_error(engine, settings):
    # a dict or a mode name was an AttributeError ('dict' object has no attribute 'validated'), {} the defaults
    with pytest.raises(UserError, match=r"settings must be a DecodingSettings, e.g. DecodingSettings\("):
        engine.generate(COFFEE, settings)


def test_decoding_settings_given_as_keywords_decode_as_the_settings_would(engine):
    """generate(prompt, max_new_tokens=4), the call a llama.cpp user tries first, was a TypeError."""
    settings = DecodingSettings(mode="greedy", max_new_tokens=4)
    assert engine.generate(COFFEE, mode="greedy", max_new_tokens=4).tokens == engine.generate(COFFEE, settings).tokens
    over = engine.generate(COFFEE, settings, max_new_tokens=2)  # keywords over the settings given
    assert len(over.tokens) == 2 and over.settings["mode"] == "greedy"
    streamed = [e for e in engine.stream(COFFEE, mode="greedy", max_new_tokens=4) if isinstance(e, Finished)]
    assert streamed[0].tokens == over.tokens + streamed[0].tokens[2:]
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'max_tokens'.*DecodingSettings' \(adaptive"):
        engine.generate(COFFEE, max_tokens=4)
    with pytest.raises(UserError, match="max_new_tokens must be at least 1"):
        engine.generate(COFFEE, max_new_tokens=0)


def test_streamed_text_adds_up_to_the_reply(engine):
    steps, done = steps_of(engine, "Write one sentence about Zürich in German.", DecodingSettings(max_new_tokens=30))
    assert isinstance(done, Finished)
    assert "".join(s.text for s in steps) == done.text
    assert all(s.candidates is not None and len(s.candidates) == 10 for s in steps if s.token >= 0)


def test_a_reply_cut_inside_a_character_ends_before_it_not_in_a_replacement_character(engine):
    """SmolLM2 writes emoji a byte or two a token: max_new_tokens may cut one in half."""
    settings = DecodingSettings(mode="greedy", max_new_tokens=12)
    whole = engine.generate("Reply with three smiley emoji.", settings)
    data = [engine.policy.token_bytes(t) for t in whole.tokens]
    cuts = [n for n in range(1, len(data) + 1) if b"".join(data[:n]).decode("utf-8", "replace").endswith("\ufffd")]
    assert cuts, f"no token of {whole.text!r} ends inside a character: pick another prompt"
    cut = engine.generate("Reply with three smiley emoji.", settings.with_(max_new_tokens=cuts[0]))
    assert cut.stop_reason == "max_new_tokens" and len(cut.tokens) == cuts[0]
    assert "\ufffd" not in cut.text
    assert whole.text.startswith(cut.text) and len(cut.text.encode()) < len(b"".join(data[:cuts[0]]))


def in_thread(call):
    """call() in another thread: what it returned or raised. The join's limit guards against a hang alone,
    far above the seconds these replies take."""
    out = []
    thread = threading.Thread(target=lambda: out.append(capture(call)), daemon=True)
    thread.start()
    thread.join(timeout=600)
    assert out, "it waited for ever"
    return out[0]


def capture(call):
    try:
        return call()
    except Exception as e:
        return e


def test_a_stream_left_open_never_blocks_the_engine_it_ends_at_the_next_reply(engine, monkeypatch):
    """A stream held the engine until read to its end: a reply asked for from another thread waited for
    ever (from the same thread it was a RuntimeError)."""
    monkeypatch.setattr("args_local.engine.STREAM_IDLE_S", 1.0)  # how long another thread waits on an unread stream
    settings = DecodingSettings(max_new_tokens=8)
    alone = engine.generate(COFFEE, settings)
    for ask in (in_thread, lambda call: call()):  # from another thread, and from the one that left it open
        open_stream = engine.stream(COFFEE, settings)
        assert next(open_stream).token == alone.tokens[0]  # the stream now holds the engine's caches
        assert ask(lambda: engine.generate(COFFEE, settings)).tokens == alone.tokens
        with pytest.raises(UserError, match="this stream was ended by a reply asked of the engine before it was read"):
            next(open_stream)
    open_stream = engine.stream(COFFEE, settings)
    next(open_stream)
    open_stream.close()  # a stream closed early ends nothing else
    assert engine.generate(COFFEE, settings).tokens == alone.tokens
    for event in engine.stream(COFFEE, settings):  # a reply asked for once its Finished is read ends nothing
        if isinstance(event, Finished):
            assert engine.generate(COFFEE, settings).tokens == event.tokens == alone.tokens


def test_a_reply_refused_for_its_prompt_leaves_the_open_stream_as_it_was(engine):
    """A prompt too long for the context, asked for in the thread whose stream was open, ended that stream
    though it decoded nothing."""
    settings = DecodingSettings(max_new_tokens=8)
    alone = engine.generate(COFFEE, settings)
    open_stream = engine.stream(COFFEE, settings)
    first = next(open_stream)
    with pytest.raises(UserError, match="does not fit"):
        engine.generate("word " * 5000, settings)
    rest = list(open_stream)
    assert [first.token] + [e.token for e in rest if isinstance(e, Step) and e.token >= 0] == alone.tokens


def test_a_stream_being_read_keeps_its_turn_while_another_thread_asks_for_a_reply(engine):
    """Ending the open stream at once would cut one user's reply short whenever another asked (a web app
    streaming to two users): the later reply waits for it, and each is the one it would be alone."""
    settings = DecodingSettings(max_new_tokens=8)
    alone, other = engine.generate(COFFEE, settings), engine.generate("Name a colour.", settings)
    read = []
    for event in engine.stream(COFFEE, settings):
        read.append(event)
        if len(read) == 1:
            later = ThreadPoolExecutor(1).submit(lambda: engine.generate("Name a colour.", settings))
        time.sleep(0.2)  # a slow reader, well within STREAM_IDLE_S
    assert read[-1].tokens == alone.tokens and later.result(timeout=120).tokens == other.tokens


def test_replies_asked_for_from_two_threads_at_once_take_turns(engine):
    settings = DecodingSettings(max_new_tokens=8)
    alone = engine.generate(COFFEE, settings)
    with ThreadPoolExecutor(2) as pool:
        replies = list(pool.map(lambda _: engine.generate(COFFEE, settings), range(4)))
    assert [r.tokens for r in replies] == [alone.tokens] * 4


def test_the_cached_prefix_is_reused_across_turns_in_whole_chunks(engine, monkeypatch):
    from args_local.policy import PREFILL_CHUNK

    first = [{"role": "user", "content": "Name a fruit. " + "Any fruit will do. " * 30}]
    reply = engine.generate(first, DecodingSettings(mode="greedy", max_new_tokens=12))
    prompt_tokens = engine.policy.tokenize(engine.policy.render_chat(first))
    reusable = len(prompt_tokens) - len(prompt_tokens) % PREFILL_CHUNK  # the first prompt's whole chunks
    assert reusable >= 2 * PREFILL_CHUNK
    second = first + [{"role": "assistant", "content": reply.text}, {"role": "user", "content": "Another one?"}]
    evaluated = []  # what llama.cpp is really asked to evaluate (it still runs), not how long it took
    real_eval = engine.policy._eval
    monkeypatch.setattr(engine.policy, "_eval", lambda tokens: (evaluated.append(len(tokens)), real_eval(tokens))[1])
    engine.generate(second, DecodingSettings(mode="greedy", max_new_tokens=1))
    second_prompt = engine.policy.tokenize(engine.policy.render_chat(second))
    # the prefill evaluated only what follows the first turn's whole chunks, not the whole prompt
    assert sum(evaluated) == len(second_prompt) - reusable
    assert engine.policy.cached_tokens()[: len(prompt_tokens)] == prompt_tokens


def test_a_prompt_gets_the_same_logits_whatever_ran_before(engine):
    """llama.cpp's logits for a token depend on the batch it ran in (on this CPU build, for some
    batch sizes): reusing a cache filled by another prompt, a reply or a cancelled prefill must not
    change a prompt's reply."""
    policy = engine.policy
    text = policy.tokenize("Why is the sky blue, and why are sunsets red? " * 20)
    for n in (95, 97, 104, 140):  # final chunks of several sizes
        ids, other = text[:n], text[:70] + policy.tokenize(" Tell me about clouds instead.")
        policy.rollback(0)
        cold = policy.prefill(ids)
        runs_before = {
            "the same prompt": lambda: policy.prefill(ids),
            "a prompt sharing its first chunk": lambda: policy.prefill(other),
            "a reply to it": lambda: [policy.step(int(np.argmax(policy.prefill(ids)))) for _ in range(3)],
            "a cancelled prefill": lambda: (policy.rollback(0), policy.prefill(ids, CancelAfterChecks(1))),
        }
        for what, run in runs_before.items():
            run()
            assert np.array_equal(policy.prefill(ids), cold), (n, what)


def test_stochastic_is_reproducible_per_seed(engine):
    s = DecodingSettings(mode="args-stochastic", temperature=1.0, max_new_tokens=20, seed=7)
    a, b = engine.generate(COFFEE, s), engine.generate(COFFEE, s)
    c = engine.generate(COFFEE, s.with_(seed=8))
    assert a.tokens == b.tokens
    assert c.tokens != a.tokens


def test_best_of_n_keeps_the_best_scored_sample(engine):
    result = engine.generate(COFFEE, DecodingSettings(mode="best-of-n", n=3, k=20, temperature=1.0, max_new_tokens=16))
    assert result.reward == pytest.approx(max(result.extra["candidates_rewards"]))
    assert len(result.extra["candidates_rewards"]) == 3


def test_a_prompt_longer_than_the_context_is_refused(policy_path, guide_dir):
    small = Engine.load(policy_path, guide_dir, n_ctx=256, threads=THREADS)
    with pytest.raises(UserError, match="does not fit the 256-token context") as e:
        small.generate("word " * 400, DecodingSettings(max_new_tokens=8))
    # named as Python passes them: it said to lower --max-new-tokens or raise --n-ctx, options of the CLI
    assert "lower max_new_tokens or raise n_ctx" in str(e.value) and "--" not in str(e.value)
    history = []
    for i in range(8):
        history += [{"role": "user", "content": f"Question {i}: " + "tell me more " * 12},
                    {"role": "assistant", "content": "Sure, " + "here is more " * 12}]
    history.append({"role": "user", "content": "And finally?"})
    events = list(small.stream(history, DecodingSettings(mode="greedy", max_new_tokens=16), drop_old_turns=True))
    notices = [e for e in events if isinstance(e, Notice)]
    assert notices and "oldest turn" in notices[0].message
    assert events[-1].dropped_turns > 0 and events[-1].tokens
    assert events[-1].dropped_turns % 2 == 0  # whole exchanges: what is kept opens with a user turn
    long_first = [{"role": "user", "content": "tell me more " * 100}, {"role": "assistant", "content": "Sure."},
                  {"role": "user", "content": "Thanks!"}, {"role": "assistant", "content": "You're welcome."},
                  {"role": "user", "content": "And finally?"}]  # dropping the first message alone would fit
    kept, _, dropped = small._fit(list(long_first), DecodingSettings(max_new_tokens=16), drop_old_turns=True)
    assert dropped == 2 and kept == long_first[2:]


def test_a_prompt_past_the_context_the_policy_was_trained_on_is_said_so(policy_path):
    """A prompt too long for the context is told to raise --n-ctx; raised past the policy's training
    length, the reply degraded without a word."""
    big = Engine.load(policy_path, need_reward=False, n_ctx=8192 + 256, threads=THREADS)
    trained = big.policy.info.n_ctx_train
    assert trained == 8192  # SmolLM2-135M's
    events = big.stream("word " * trained, DecodingSettings(mode="greedy", max_new_tokens=8))
    first = next(events)  # said before the prefill, which would take a minute here
    events.close()
    assert isinstance(first, Notice) and f"more than the {trained} the policy was trained on" in first.message
    assert not any(isinstance(e, Notice) for e in big.stream("Hi", DecodingSettings(mode="greedy", max_new_tokens=2)))


def test_a_shortened_reply_takes_the_room_the_prompt_leaves_from_one_rendering_of_it(policy_path):
    """What the server asks for OpenAI's max_tokens: a ceiling, not room the prompt must leave."""
    small = Engine.load(policy_path, need_reward=False, n_ctx=256, threads=THREADS)
    render = small.policy.render_chat
    renders = []
    small.policy.render_chat = lambda messages: renders.append(messages) or render(messages)
    done = small.generate("Name a fruit.", DecodingSettings(mode="greedy", max_new_tokens=10**6), shorten_reply=True)
    assert done.settings["max_new_tokens"] == 256 - done.prompt_tokens
    assert len(renders) == 1  # rendered and tokenized once to fit the context and to decode
    with pytest.raises(UserError, match=r"the prompt is \d+ tokens: it does not fit the 256-token context with room "
                                        "for a reply") as e:
        small.generate("word " * 400, DecodingSettings(mode="greedy", max_new_tokens=8), shorten_reply=True)
    assert "max_new_tokens" not in str(e.value)  # nobody chose one that could be lowered


def test_a_reply_that_fills_the_context_stops_where_the_sequential_engine_does(policy_path, guide_dir):
    """The overlap runs the policy's favourite ahead of the choice; counted as context used, that guess made
    ARGS stop a token short of the room the prompt left, with another reply than one core's (no overlap)."""
    small = Engine.load(policy_path, guide_dir, n_ctx=256, threads=THREADS)
    sequential = Engine(small.policy, small.reward, overlap=False)
    prompt = "Repeat this sentence forever: " + "the cat sat on the mat, " * 12  # it never ends its turn
    settings = DecodingSettings(mode="args-greedy", max_new_tokens=10**6, repeat_penalty=1.0)
    guessed = small.generate(prompt, settings, shorten_reply=True)
    alone = sequential.generate(prompt, settings, shorten_reply=True)
    assert guessed.prompt_tokens + len(guessed.tokens) == 256 and guessed.stop_reason == "context_full"
    assert alone.tokens == guessed.tokens and alone.stop_reason == "context_full"


def test_a_closed_engine_frees_its_models_and_refuses_further_replies(policy_path, guide_dir):
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    settings = DecodingSettings(max_new_tokens=4)
    engine = Engine.load(policy_path, guide_dir, threads=THREADS)  # it had no close(): only the GC freed it
    engine.generate(COFFEE, settings)
    left_open = engine.stream(COFFEE, settings)
    next(left_open)
    loaded, reward = rss_mb(), weakref.ref(engine.reward)
    in_thread(engine.close)  # a stream left open is no reply in progress: from another thread close() waited for ever
    assert reward() is None  # the open stream's scorer kept the guide's session alive
    assert loaded - rss_mb() > 150  # policy and guide: 430 MB here; less where llama.cpp reads its weights in place
    for ask in (lambda: engine.generate(COFFEE), lambda: next(left_open)):
        with pytest.raises(UserError, match="this engine is closed"):
            ask()
    engine.close()  # a second close does nothing
    with Engine.load(policy_path, need_reward=False, threads=THREADS) as small:
        small.generate(COFFEE, DecodingSettings(mode="greedy", max_new_tokens=2))
    with pytest.raises(UserError, match="this engine is closed"):
        small.generate(COFFEE, DecodingSettings(mode="greedy"))


@pytest.mark.parametrize("n_ctx", [10, 255])
def test_a_context_below_what_llama_cpp_gives_is_refused_from_python_as_on_the_command_line(policy_path, n_ctx):
    # llama.cpp gave 256 tokens, llama-cpp-python's buffer held n_ctx: a longer prompt was a numpy ValueError
    with pytest.raises(UserError, match="between 256 and 131072"):
        Engine.load(policy_path, need_reward=False, n_ctx=n_ctx, threads=THREADS)


@pytest.mark.parametrize("option, value", [("threads", -3), ("threads", 1.5), ("rm_threads", 0), ("n_gpu_layers", -2)])
def test_a_thread_or_layer_count_the_command_line_refuses_is_refused_from_python_too(policy_path, option, value):
    # args_local.load(threads=-3) was accepted: llama.cpp was handed -3 threads
    with pytest.raises(UserError, match=f"{option} must be"):
        Engine.load(policy_path, need_reward=False, **{"threads": THREADS, option: value})


@pytest.mark.parametrize("options, words", [
    ({"use_gpu": "no"}, "use_gpu must be True or False"),  # "no" read as yes: the GPU was used
    ({"need_reward": False, "reward": "encoder"}, "loads no reward model"),  # the reward model was ignored
    ({"overlap": 0}, "overlap must be True or False")])
def test_a_switch_that_is_not_true_or_false_or_contradicts_another_is_refused(policy_path, options, words):
    with pytest.raises(UserError, match=words):
        Engine.load(policy_path, **{"need_reward": False, **options})


def test_a_cancel_that_is_not_an_event_is_a_user_error(engine):
    # cancel=True was an AttributeError from inside the prefill
    with pytest.raises(UserError, match="cancel must be a threading.Event"):
        engine.generate(COFFEE, DecodingSettings(max_new_tokens=2), cancel=True)


def test_a_non_finite_reward_is_an_error_naming_the_step(policy_path, guide_dir, tmp_path):
    def nan_rewards(manifest):  # every objective's reward NaN
        for head in manifest["heads"].values():
            head["normalization"] = {"mean": 0.0, "std": float("nan")}

    broken = guide_copy(guide_dir, tmp_path / "rm", nan_rewards)
    engine = Engine.load(policy_path, broken, threads=THREADS)
    with pytest.raises(RewardError, match="step 0: .*non-finite"):
        engine.generate(COFFEE, DecodingSettings(max_new_tokens=4))
    # the engine is not wedged (its lock was released): the next request gets the same clear error
    with pytest.raises(RewardError, match="step 0"):
        engine.generate(COFFEE, DecodingSettings(max_new_tokens=4))
    proc = run_cli("generate", COFFEE, "--reward", str(broken), "--max-new-tokens", "4", "--threads", str(THREADS))
    assert proc.returncode == 2
    assert "step 0" in proc.stderr and "Traceback" not in proc.stderr


class CancelAfterChecks:
    """The user's Esc, arriving after the cancel flag has been checked n times."""

    def __init__(self, n: int):
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        return self.n < 0


def test_prefill_runs_in_chunks_and_a_cancel_stops_it_between_two(engine):
    from args_local.policy import PREFILL_CHUNK

    policy = engine.policy
    ids = policy.tokenize(policy.render_chat([{"role": "user", "content": "Count the words. " + "one two three " * 200}]))
    assert len(ids) > 3 * PREFILL_CHUNK
    policy.rollback(0)
    assert policy.prefill(ids, CancelAfterChecks(2)) is None  # cancelled before the third chunk
    assert policy.n_cached == 2 * PREFILL_CHUNK and policy.cached_tokens() == ids[: 2 * PREFILL_CHUNK]
    logits = policy.prefill(ids)  # resumes from the chunks already cached
    policy.rollback(0)
    assert np.array_equal(logits, policy.prefill(ids))  # the same logits as one uninterrupted prefill


def test_a_reply_cancelled_during_the_prefill_ends_at_once(engine):
    steps, done = steps_of(engine, COFFEE + " Explain in detail." * 40, DecodingSettings(max_new_tokens=32),
                           cancel=CancelAfterChecks(1))
    assert steps == [] and done.stop_reason == "cancelled" and done.tokens == []


@pytest.mark.parametrize("mode", ["args-greedy", "best-of-n"])
def test_a_reply_cancelled_before_its_first_token_has_no_reward_in_any_mode(engine, mode):
    # best-of-n reported the score of " " (its stand-in for an empty sample) as the empty reply's reward
    done = engine.generate(COFFEE, DecodingSettings(mode=mode, max_new_tokens=8), cancel=CancelAfterChecks(0))
    assert done.text == "" and done.reward is None and done.objective_rewards is None


@pytest.mark.parametrize("kind", ["decoder", "encoder"])
def test_the_largest_k_allowed_runs_with_either_reward_model(engine, encoder_dir, kind):
    from args_local.reward import load_reward_model
    from args_local.settings import MAX_K

    rm = engine.reward if kind == "decoder" else load_reward_model(encoder_dir, THREADS)
    steps, done = steps_of(Engine(engine.policy, rm), COFFEE, DecodingSettings(k=MAX_K, max_new_tokens=1))
    assert len(steps[0].candidates) == MAX_K and len(done.rewards) == 1 and all(np.isfinite(done.rewards))


def test_dir_and_help_of_the_package_show_every_public_name():
    # Engine, DecodingSettings, Step... are imported lazily: dir(), tab completion and help(args_local) missed them
    import pydoc

    import args_local

    assert set(args_local.__all__) <= set(dir(args_local))
    page = pydoc.render_doc(args_local, renderer=pydoc.plaintext)
    assert all(f"class {name}(" in page for name in args_local.__all__ if name != "load")
