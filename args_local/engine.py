"""The engine: policy + reward model + decoding rule, yielding a stream of events.

The CLI, the chat app and the eval harness all consume `Engine.stream(...)`:

    engine = Engine.load()                                   # built-in default models
    for event in engine.stream("How do I make coffee?", DecodingSettings(w=1.5)):
        if isinstance(event, Step): print(event.text, end="")
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from . import home, processors, search
from .errors import PromptTooLong, UserError
from .policy import LlamaPolicy
from .reward import check_can_guide, load_reward_model, members
from .reward.base import checked
from .settings import DecodingSettings, check_load_options
from .text_stream import TextStream
from .user_text import checked_text

ARGS_MODES = ("args-greedy", "args-stochastic")
ROLES = ("system", "user", "assistant")
# how long a reply asked for from another thread waits on an open stream whose reader has stopped reading it
STREAM_IDLE_S = 10.0


@dataclass
class Step:
    """One decoded token. candidates/logits/rewards are the k the search chose among (ARGS modes; None
    where it took a token unscored). token is the end of turn on the last step of a reply that ended its
    turn, -1 on a Step that only gives out text held back (the texts of all Steps make Finished.text)."""

    step: int
    token: int
    text: str  # new printable text (may be "" while a character or stop string is incomplete)
    candidates: list[int] | None = None
    logits: list[float] | None = None
    rewards: list[float] | None = None
    chosen_index: int = 0
    ms_policy: float = 0.0
    ms_reward: float = 0.0
    # each objective's reward of all k candidates (rewards = Σ weight · these)
    candidate_objective_rewards: dict[str, list[float]] | None = None

    @property
    def objective_rewards(self) -> dict[str, float] | None:
        """The chosen candidate's reward by objective."""
        if self.candidate_objective_rewards is None:
            return None
        return {name: r[self.chosen_index] for name, r in self.candidate_objective_rewards.items()}

    @property
    def reward(self) -> float | None:
        return None if self.rewards is None else self.rewards[self.chosen_index]


@dataclass
class Notice:
    """Something the user should know, e.g. that old turns were dropped to fit the context."""

    message: str


@dataclass
class _Turn:
    """An open stream's hold on the engine: whose it is, and when its reader last got an event."""
    thread: int = field(default_factory=threading.get_ident)
    read_at: float = field(default_factory=time.monotonic)
    events: Iterator | None = None  # its decoding: closed when the turn ends early, which frees its reward scorer


def _return_freed_memory() -> None:
    """glibc keeps freed heap for the process to reuse; a program that closes an engine and goes on (to load
    other models, say) wants it back: here 130 MB more than the 300 MB the close alone gave back."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only; elsewhere there is nothing to do
    if trim is not None:
        trim(0)


@dataclass
class Finished:
    """A stream's last event, and what generate() returns.

    stop_reason: end_of_turn, max_new_tokens, stop_string (text stops before it), cancelled (text is what
    came before) or context_full (it took all the room the prompt left). tokens: the reply's, without the
    end of turn. rewards: the chosen candidate's reward at each step the reward model scored (ARGS modes).
    reward: the loaded reward model's score of the whole reply (None without one, or for an empty reply);
    objective_rewards: the same by objective; objective_weights: the weights combining them, after any gate.
    seconds: the decoding's, without the prompt's prefill (ms_prefill) and the final score (best-of-n: all
    of it, its n samples and their scores); tokens_per_s = len(tokens) / seconds. settings: the ones that
    decoded it. extra: best-of-n's candidates_rewards and chosen_sample."""

    text: str
    tokens: list[int]
    stop_reason: str
    rewards: list[float]
    reward: float | None
    settings: dict
    prompt_tokens: int
    dropped_turns: int
    seconds: float
    ms_prefill: float
    ms_policy_per_step: float
    ms_reward_per_step: float
    reward_calls: int
    objective_rewards: dict[str, float] | None = None
    objective_weights: dict[str, float] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return {"text": self.text, "tokens": self.tokens, "stop_reason": self.stop_reason,
                "rewards": self.rewards, "reward": self.reward, "tokens_per_s": self.tokens_per_s,
                "ms_policy_per_step": self.ms_policy_per_step, "ms_reward_per_step": self.ms_reward_per_step,
                "ms_prefill": self.ms_prefill, "prompt_tokens": self.prompt_tokens,
                "dropped_turns": self.dropped_turns, "reward_calls": self.reward_calls,
                "objective_rewards": self.objective_rewards, "objective_weights": self.objective_weights,
                "settings": self.settings, **self.extra}


Event = Union[Step, Notice, Finished]


def as_messages(prompt: str | list[dict], system: str | None = None) -> list[dict]:
    """The chat messages to answer; every prompt passes here, so here it is checked."""
    if not isinstance(prompt, (str, list, tuple)):  # a dict would be read as its keys
        raise UserError(f"the prompt must be text or a list of messages (got {type(prompt).__name__})")
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    for i, m in enumerate(messages):  # a malformed message is named here, not a KeyError in the template
        # another role ('human', 'User') went to the template and the reward model as it was, read as neither
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise UserError(f"message {i + 1} of the prompt is not {{'role': 'system', 'user' or 'assistant', "
                            f"'content': 'its text'}} (got {m!r:.100})")
    if system is not None:
        messages = [{"role": "system", "content": system}] + [m for m in messages if m["role"] != "system"]
    for m in messages:
        checked_text(m["content"], f"the {m['role']} message")
    if not messages or (messages[-1]["role"] == "user" and not messages[-1]["content"].strip()):
        raise UserError("the prompt is empty: give the question or message to answer")
    if not any(m["role"] == "user" for m in messages):  # a system prompt alone was answered as if asked
        raise UserError("the prompt has no user message: end it with the message to answer")
    return messages


def with_decoding(settings: DecodingSettings, decoding: dict) -> DecodingSettings:
    """settings with the decoding keywords of a generate() or stream() call (max_new_tokens=64, ...) over it."""
    known = {f.name for f in fields(DecodingSettings)}
    unknown = sorted(set(decoding) - known)
    if unknown:
        raise TypeError(f"unexpected keyword argument {unknown[0]!r}: the keywords besides system, cancel, "
                        f"drop_old_turns and shorten_reply are DecodingSettings' ({', '.join(sorted(known))})")
    return settings.with_(**decoding) if decoding else settings


class Engine:
    """A policy and a reward model, loaded once (args_local.load()), decoding one reply at a time.

    Replies asked for from several threads take turns, streams too. A stream left open (a loop left early,
    a client gone) never blocks the engine for long: a reply asked for from the same thread ends it at once,
    one from another thread once its reader has left it unread for STREAM_IDLE_S; its next event is then a
    UserError saying so. close(), or a `with` block, frees the models."""

    def __init__(self, policy: LlamaPolicy, reward=None, overlap: bool | None = None):
        """overlap: run the reward model beside llama.cpp's next step (see `_score_while_guessing`);
        default on wherever there is a second core. The replies are the same either way."""
        self.policy = policy
        self.reward = reward
        self.overlap = (os.cpu_count() or 1) >= 2 if overlap is None else overlap
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="args-local-rm") if self.overlap else None
        for model in members(reward) if reward is not None else ():
            if model.kind == "decoder":
                model.check_policy_vocabulary(Path(policy.info.path).name, policy.n_vocab,
                                              policy.tokenize(model.vocab["probe_text"]))
            check_can_guide(model.name, model.kind)
        # held while a reply computes (the KV caches are shared state); reentrant, as generate() holds it
        # throughout while the stream it reads takes it for each event
        self._lock = threading.RLock()
        self._turn_over = threading.Condition(self._lock)  # notified when an open stream ends
        self._current = None  # the open stream the caches are decoding for (a _Turn); one that is not it has ended
        self._closed = False

    @classmethod
    def load(cls, policy: str | Path | None = None, reward: str | Path | None = None, *, n_ctx: int = 4096,
             threads: int | None = None, rm_threads: int | None = None, n_gpu_layers: int | None = None,
             use_gpu: bool = True, need_reward: bool = True, overlap: bool | None = None) -> "Engine":
        """Load models (the built-in defaults when a path is None). need_reward=False skips the RM.

        threads: llama.cpp's; rm_threads: onnxruntime's (defaults: args_local.cpu)."""
        check_load_options(rm_threads=rm_threads)  # the policy checks its own; both before anything loads
        for name, value in (("use_gpu", use_gpu), ("need_reward", need_reward), ("overlap", overlap)):
            if not isinstance(value, bool) and not (name == "overlap" and value is None):  # "no" read as yes
                raise UserError(f"{name} must be True or False (got {value!r})")
        if reward is not None and not need_reward:  # it would be ignored without a word
            raise UserError("need_reward=False loads no reward model: leave out reward, or need_reward")
        p = LlamaPolicy(policy or home.default_policy(), n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers)
        rm = load_reward_model(reward or home.default_reward(), rm_threads, use_gpu) if need_reward else None
        return cls(p, rm, overlap)

    # ------------------------------------------------------------------------------------
    def generate(self, prompt: str | list[dict], settings: DecodingSettings | None = None, *,
                 system: str | None = None, cancel: threading.Event | None = None,
                 drop_old_turns: bool = False, shorten_reply: bool = False, **decoding) -> Finished:
        """Run to the end and return the result (the stream's last event); keywords as stream()'s."""
        with self._lock:  # from start to end: another thread's reply waits for it, however slowly it is read
            for event in self.stream(prompt, settings, system=system, cancel=cancel, drop_old_turns=drop_old_turns,
                                     shorten_reply=shorten_reply, **decoding):
                if isinstance(event, Finished):
                    return event
        raise AssertionError("stream ended without Finished")

    def stream(self, prompt: str | list[dict], settings: DecodingSettings | None = None, *,
               system: str | None = None, cancel: threading.Event | None = None,
               drop_old_turns: bool = False, shorten_reply: bool = False, **decoding) -> Iterator[Event]:
        """Decode a reply to a prompt (text, or messages [{'role': ..., 'content': ...}] ending with the
        one to answer), yielding Step events, any Notice, and a last Finished.

        decoding: DecodingSettings fields over `settings` (or the defaults), e.g. max_new_tokens=64, mode='greedy'.

        system: a system prompt, replacing any system message in the prompt. cancel: a threading.Event
        (anything with is_set()); set, from any thread, it ends the reply at the next step or prefill chunk
        with stop_reason 'cancelled'. drop_old_turns: a conversation too long for the context loses its
        oldest turns (a Notice says so) rather than being a UserError. shorten_reply: max_new_tokens is a
        ceiling, lowered to the room the prompt leaves, rather than room the prompt must leave (the server
        caps OpenAI's max_tokens so)."""
        self._check_open()
        if not isinstance(settings, (DecodingSettings, type(None))):  # a dict was read as the defaults when empty
            raise UserError(f"settings must be a DecodingSettings, e.g. DecodingSettings(mode='greedy', "
                            f"max_new_tokens=64) (got {type(settings).__name__})")
        settings = with_decoding(settings or DecodingSettings(), decoding).validated(self.policy.n_vocab)
        if settings.uses_reward and self.reward is None:
            raise UserError(f"mode {settings.mode} needs a reward model; none is loaded")
        self.objective_weights(settings)  # an objective the reward model lacks: before any work
        if cancel is not None and not callable(getattr(cancel, "is_set", None)):
            raise UserError(f"cancel must be a threading.Event (anything with is_set()), got {type(cancel).__name__}")
        messages = as_messages(prompt, system)
        this = _Turn()
        try:
            with self._lock:
                self._wait_for_open_stream(this)
                self._check_open()  # closed while this call waited
                fitted = self._fit(messages, settings, drop_old_turns, shorten_reply)  # a prompt too long ends nothing
                self._end_open_stream()  # the stream still open, if any, has ended
                self._current = this
                this.events = events = self._reply(*fitted, settings, cancel, shorten_reply)
                event = next(events)
            while not isinstance(event, Finished):
                this.read_at = time.monotonic()
                yield event
                with self._lock:
                    self._check_open()
                    if self._current is not this:
                        raise UserError("this stream was ended by a reply asked of the engine before it was read to "
                                        "its end: an engine decodes one reply at a time, so read each stream to its "
                                        "end (or close() it) before asking for the next, or use generate()")
                    event = next(events)
        finally:  # its Finished computed, or an error, or closed early: the next reply need not wait
            with self._lock:
                if self._current is this:
                    self._current = None
                    self._turn_over.notify_all()
        yield event

    def _end_open_stream(self) -> None:
        """Its reader may keep it, unread, for ever: its scorer would keep the reward model's session alive."""
        if self._current is not None:
            self._current.events.close()

    def _wait_for_open_stream(self, this: "_Turn") -> None:
        """Another thread's open stream keeps its turn until it ends or its reader has left it unread for
        STREAM_IDLE_S (then it ends); this thread's own ends at once: waiting for it would wait for ever."""
        while not self._closed and self._current is not None and self._current.thread != this.thread:
            idle = time.monotonic() - self._current.read_at
            if idle >= STREAM_IDLE_S:
                return
            self._turn_over.wait(STREAM_IDLE_S - idle)

    def _reply(self, messages, prompt_ids: list[int], dropped: int, settings: DecodingSettings, cancel,
               shorten_reply: bool):
        """stream()'s events for the prompt _fit made, computed with the engine's lock held."""
        if shorten_reply:
            room = self.policy.n_ctx - len(prompt_ids)
            settings = settings.with_(max_new_tokens=min(settings.max_new_tokens, room))
        if dropped:
            yield Notice(f"dropped the {dropped} oldest turn(s) to fit the {self.policy.n_ctx}-token context")
        trained = self.policy.info.n_ctx_train  # what --n-ctx may be raised to, told to a prompt that did not fit
        if 0 < trained < len(prompt_ids) + settings.max_new_tokens:
            yield Notice(f"the prompt and reply may take {len(prompt_ids) + settings.max_new_tokens} tokens, more "
                         f"than the {trained} the policy was trained on: its reply may be poor")
        rng = np.random.default_rng(settings.seed)
        if settings.mode == "best-of-n":
            yield from self._best_of_n(messages, prompt_ids, settings, rng, cancel, dropped)
        else:
            yield from self._decode(messages, prompt_ids, settings, rng, cancel, dropped)

    def close(self) -> None:
        """Free the models now (llama.cpp's weights and cache, the reward model's session, the worker
        thread) rather than when the engine is garbage-collected, once the event being computed is (a
        generate() in another thread ends first). A reply asked for afterwards, or the next event of a
        stream still open, is a UserError. `with args_local.load() as engine:` closes it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._turn_over.notify_all()  # a reply waiting for an open stream's turn is told at once
            self._end_open_stream()
            if self._worker is not None:
                self._worker.shutdown()
            self.policy.close()  # kept (closed): a call checking its settings reads n_vocab
            self.reward = self._worker = None
        _return_freed_memory()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise UserError("this engine is closed: load another (args_local.load())")

    def objective_weights(self, settings: DecodingSettings) -> dict[str, float] | None:
        """The weights of the reward model's objectives these settings ask for (UserError if it
        lacks one, or if all are 0 in a reward-guided mode); None without a reward model."""
        if self.reward is None:
            return None
        vector = self.reward.weight_vector(dict(settings.objectives) if settings.objectives else None)
        if settings.uses_reward and not vector.any():
            raise UserError(f"all objective weights of {self.reward.name} are 0: mode {settings.mode} "
                            "needs at least one positive weight")
        return dict(zip(self.reward.objectives, vector.tolist()))

    def prompt_weights(self, conversation: list[dict], settings: DecodingSettings) -> dict[str, float] | None:
        """The objective weights for this conversation: the settings' weights with any gated
        objective switched or scaled by its gate (reward/gates.py); what Finished.objective_weights reports."""
        weights = self.objective_weights(settings)
        return None if weights is None else self.reward.prompt_weights(conversation, weights)

    def _final_rewards(self, conversation, texts: list[str], weights: dict) -> tuple[np.ndarray, list[dict]]:
        """Each finished reply's combined reward and its rewards by objective, from one pass."""
        by_objective = self.reward.score_objectives(conversation, texts)
        combined = checked(self.reward.combine(by_objective, weights))
        return combined, [{n: float(r[i]) for n, r in by_objective.items()} for i in range(len(texts))]

    def _fit(self, messages: list[dict], settings: DecodingSettings, drop_old_turns: bool, shorten_reply: bool = False):
        """Prompt tokens that leave room for the reply (max_new_tokens, or one token with shorten_reply);
        in chat, drop the oldest turns until they do."""
        budget = self.policy.n_ctx - (1 if shorten_reply else settings.max_new_tokens)
        dropped = 0
        while True:
            ids = self.policy.tokenize(self.policy.render_chat(messages))
            if len(ids) <= budget:
                return messages, ids, dropped
            turns = [i for i, m in enumerate(messages) if m["role"] != "system"]
            if not drop_old_turns or len(turns) <= 1:
                if shorten_reply:
                    raise PromptTooLong(f"the prompt is {len(ids)} tokens: it does not fit the {self.policy.n_ctx}"
                                        "-token context with room for a reply. Shorten it, or use a larger context "
                                        "(n_ctx).")
                raise PromptTooLong(f"the prompt is {len(ids)} tokens; with max_new_tokens {settings.max_new_tokens} "
                                    f"it does not fit the {self.policy.n_ctx}-token context. Shorten it, lower "
                                    "max_new_tokens or raise n_ctx.")
            del messages[turns[0]]
            dropped += 1
            # and the replies to it: a conversation never opens with the assistant (the chat templates
            # of Gemma, Mistral and others refuse one); the last message, the one to answer, stays
            while turns[0] < len(messages) - 1 and messages[turns[0]]["role"] == "assistant":
                del messages[turns[0]]
                dropped += 1

    def _choose(self, logits, settings: DecodingSettings, scorer, rng, step: int, ev: Step,
                may_guess: bool = False) -> tuple[int, np.ndarray | None]:
        """The next token, and the logits after it when llama.cpp already ran it (else None)."""
        mode = settings.mode
        if mode in ARGS_MODES:
            ids, values = search.plausible(*search.top_k(logits, settings.k), settings.min_p)
            temperature = settings.temperature if mode == "args-stochastic" else None
            if len(ids) == 1 or search.policy_is_sure(logits, settings.adaptive):  # as if all rewards were equal
                token = int(ids[search.args_choose(ids, values, np.zeros(len(ids)), 0.0, temperature, rng)])
                scorer.skip(token, self.policy.token_bytes(token))
                return token, None
            pieces = [self.policy.token_bytes(int(t)) for t in ids]
            guess = int(ids[0]) if may_guess and not self.policy.is_end_of_turn(int(ids[0])) else None
            rewards, ahead = self._score_while_guessing(scorer, ids, pieces, guess, step, ev)
            j = search.args_choose(ids, values, rewards, settings.w, temperature, rng)
            scorer.accept(j)
            ev.candidates, ev.logits, ev.rewards, ev.chosen_index = ids.tolist(), values.tolist(), rewards.tolist(), j
            ev.candidate_objective_rewards = {n: r.tolist() for n, r in scorer.last_by_objective.items()}
            token = int(ids[j])
            if ahead is not None and token != guess:
                self.policy.rollback(self.policy.n_cached - 1)  # the guess was wrong: forget it
                ahead = None
            return token, ahead
        if mode == "greedy" or settings.temperature == 0:
            return search.greedy_token(logits), None
        if mode == "top-k" or mode == "best-of-n":
            return search.sample_top_k(logits, settings.k, settings.temperature, rng), None
        return search.sample_nucleus(logits, settings.top_p, settings.temperature, rng), None

    def _score_while_guessing(self, scorer, ids, pieces, guess: int | None, step: int, ev: Step):
        """The k candidates' rewards, and the policy's logits after `guess` (None: no guess).

        The reward model scores on a worker thread while llama.cpp runs the policy's own favourite
        candidate, the one ARGS takes at about 9 steps in 10: then the next step's logits are
        ready when the choice is made. Both libraries release the GIL, so on two cores the step
        costs about max(policy, RM) instead of their sum."""
        def timed_score():
            t = time.perf_counter()
            rewards = scorer.score(ids, pieces)
            return rewards, (time.perf_counter() - t) * 1000

        if guess is None or self._worker is None:
            rewards, ev.ms_reward = timed_score()
            return checked(rewards, step), None
        future = self._worker.submit(timed_score)
        t = time.perf_counter()
        try:
            ahead = self.policy.step(guess)
        finally:
            ev.ms_policy = (time.perf_counter() - t) * 1000
            rewards, ev.ms_reward = future.result()  # never leave the worker running on the scorer
        return checked(rewards, step), ahead

    def _decode(self, messages, prompt_ids, settings, rng, cancel, dropped, score_final: bool = True):
        policy = self.policy
        conversation = [m for m in messages if m["role"] != "system"]
        start = time.perf_counter()
        logits = policy.prefill(prompt_ids, cancel)
        ms_prefill = (time.perf_counter() - start) * 1000
        # the gate's prefill only where the weights are used: best-of-n weighs once, after its samples
        weights = self.prompt_weights(conversation, settings) if score_final or settings.mode in ARGS_MODES else None
        scorer = None
        if logits is not None and settings.mode in ARGS_MODES:
            scorer = self.reward.start(conversation, weights)
        chain = processors.processors_for(settings)
        stream = TextStream(settings.stop)
        tokens, rewards, ms_policy, ms_reward = [], [], 0.0, 0.0
        stop_reason = "max_new_tokens"
        decode_start = time.perf_counter()
        for step in range(settings.max_new_tokens):
            if logits is None or (cancel is not None and cancel.is_set()):
                stop_reason = "cancelled"
                break
            ev = Step(step=step, token=-1, text="")
            may_guess = step + 1 < settings.max_new_tokens  # _fit left the context room for every step
            token, ahead = self._choose(processors.apply_all(chain, tokens, logits), settings, scorer, rng, step, ev,
                                        may_guess)
            ev.token = token
            ms_reward += ev.ms_reward
            if ev.rewards is not None:
                rewards.append(ev.reward)
            if policy.is_end_of_turn(token):
                ev.text = stream.flush()
                yield ev
                stop_reason = "end_of_turn"
                break
            tokens.append(token)
            ev.text = stream.feed(policy.token_bytes(token))
            if stream.stopped:
                yield ev
                stop_reason = "stop_string"
                break
            if step + 1 < settings.max_new_tokens:
                if ahead is not None:
                    logits = ahead
                else:
                    t = time.perf_counter()
                    logits = policy.step(token)
                    ev.ms_policy += (time.perf_counter() - t) * 1000
                ms_policy += ev.ms_policy
            yield ev
        seconds = time.perf_counter() - decode_start
        # by the reply's length, not the cache's: a guessed step in the cache made ARGS stop a token early
        if stop_reason == "max_new_tokens" and len(prompt_ids) + len(tokens) >= policy.n_ctx:
            stop_reason = "context_full"
        tail = stream.flush()
        if tail:
            yield Step(step=len(tokens), token=-1, text=tail)
        n_steps = max(1, len(tokens) + (stop_reason == "end_of_turn"))
        reward, by_objective = None, None
        if score_final and self.reward is not None and stream.text.strip():
            combined, (by_objective,) = self._final_rewards(conversation, [stream.text], weights)
            reward = float(combined[0])
        yield Finished(
            text=stream.text, tokens=tokens, stop_reason=stop_reason, rewards=rewards, reward=reward,
            settings=settings.to_dict(), prompt_tokens=len(prompt_ids), dropped_turns=dropped,
            seconds=seconds, ms_prefill=ms_prefill, ms_policy_per_step=ms_policy / n_steps,
            ms_reward_per_step=ms_reward / n_steps,
            reward_calls=len(rewards) + (reward is not None),
            objective_rewards=by_objective, objective_weights=weights,
        )

    def _best_of_n(self, messages, prompt_ids, settings, rng, cancel, dropped):
        """N sampled replies (top-k sampling at the given temperature); the RM keeps the best."""
        conversation = [m for m in messages if m["role"] != "system"]
        samples: list[tuple[list[Step], Finished]] = []
        start = time.perf_counter()
        for _ in range(settings.n):
            steps, done = [], None
            for ev in self._decode(messages, prompt_ids, settings, rng, cancel, dropped, score_final=False):
                if isinstance(ev, Step):
                    steps.append(ev)
                else:
                    done = ev
            samples.append((steps, done))
            if done.stop_reason == "cancelled":
                break
        texts = [d.text for _, d in samples]
        weights = self.prompt_weights(conversation, settings)
        scores, by_objective = self._final_rewards(conversation, [t if t.strip() else " " for t in texts], weights)
        best = search.best_of_n(scores)
        steps, done = samples[best]
        yield from steps
        if done.text.strip():  # an empty reply (cancelled at once) has no reward, as in the other modes
            done.reward, done.objective_rewards = float(scores[best]), by_objective[best]
        done.objective_weights = weights
        done.seconds = time.perf_counter() - start
        done.reward_calls = len(samples)
        done.extra = {"candidates_rewards": [float(s) for s in scores], "chosen_sample": best}
        yield done
