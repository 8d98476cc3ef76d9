"""The chat app driven through Textual's Pilot, on the real default models (one Engine per module)."""

import asyncio
import math
import sqlite3
import time

import pytest

from args_local import home
from args_local.chat import ChatApp
from args_local.chat.compare_screen import CompareScreen
from args_local.chat.help_screen import HelpScreen
from args_local.chat.history_screen import HistoryScreen
from args_local.chat.knobs_screen import KnobsScreen
from args_local.chat.messages import Note, ReplyView, UserMessage, override_style, reward_style
from args_local.chat.prompt_input import PromptInput
from args_local.chat.status_bar import StatusBar, gated_objectives
from args_local.engine import Engine
from args_local.settings import DecodingSettings

from .test_chat_history import other_chat, write_locked

SIZE = (80, 24)
QUICK = DecodingSettings(max_new_tokens=16)


@pytest.fixture(scope="module")
def engine():
    if not home.default_policy().is_file() or not home.default_reward().is_dir():
        pytest.fail(f"the default models are missing ({home.default_policy()}, {home.default_reward()}): "
                    "build them first with tools/build_default_models.py (CI does this before the tests)")
    return Engine.load(threads=1)


def make_app(engine, tmp_path, settings=QUICK, **kw):
    return ChatApp(engine=engine, db_path=tmp_path / "history.sqlite", judge_path=tmp_path / "no-judge",
                   rm_threads=1, settings=settings, **kw)


async def send(app, pilot, prompt):
    """Type a prompt, press Enter, wait for the reply to finish; return its view."""
    app.query_one(PromptInput).focus()
    await pilot.press(*prompt, "enter")
    await app.workers.wait_for_complete()
    await pilot.pause()
    return list(app.query(ReplyView))[-1]


def stored_messages(tmp_path):
    db = sqlite3.connect(tmp_path / "history.sqlite")
    rows = db.execute("SELECT role, content, reward, stop_reason, settings FROM messages ORDER BY id").fetchall()
    db.close()
    return rows


async def enter_knob(app, pilot, field: str, value: str) -> None:
    """Type VALUE into the knobs screen's FIELD (opening it with F3 if needed) and press Enter."""
    if not isinstance(app.screen, KnobsScreen):
        await pilot.press("f3")
    app.screen.query_one(f"#{field}").value = value
    app.screen.query_one(f"#{field}").focus()
    await pilot.press("enter")
    await pilot.pause()


def streaming_slowly(engine, monkeypatch) -> None:
    """Each token 10 ms later (llama.cpp still runs it): on a quiet machine a 400-token reply streamed in less
    time than the test took to scroll back, so nothing was left to stream while it looked."""
    step = engine.policy.step
    monkeypatch.setattr(engine.policy, "step", lambda token: (time.sleep(0.01), step(token))[1])


async def until(pilot, done, tries: int = 1000) -> None:
    """Let the app run until done() (a reply streaming far enough), or give up after tries pauses."""
    for _ in range(tries):
        if done():
            return
        await pilot.pause(0.02)


async def streaming_a_long_reply(app, pilot, prompt: str = "Write a long story about a dragon.") -> ReplyView:
    """Send prompt and return its reply's view once a few tokens have streamed (the app made with streaming_slowly
    and room for a long reply)."""
    await pilot.press(*prompt, "enter")
    view = list(app.query(ReplyView))[-1]
    await until(pilot, lambda: len(view.reply.text) > 10)
    return view


def text_of(widget) -> str:
    return str(widget.render())


async def test_prompt_streams_a_reply_with_its_reward_and_stores_the_turn(engine, tmp_path):
    app = make_app(engine, tmp_path)
    partial_lengths = []
    async with app.run_test(size=SIZE) as pilot:
        show = app.show_reply
        app.show_reply = lambda view, reply: (partial_lengths.append(len(reply.text)), show(view, reply))
        view = await send(app, pilot, "What is the capital of France?")
        reply = view.reply
        assert reply.text.strip() and reply.error is None
        assert reply.stop_reason in ("end_of_turn", "max_new_tokens")
        assert isinstance(reply.reward, float) and math.isfinite(reply.reward)
        assert f"reward {reply.reward:+.2f}" in text_of(view.query_one(".reply-meta"))
        assert "overrode" in text_of(view.query_one(".reply-meta"))  # ARGS mode: the override rate shows
        # It streamed: the view was redrawn with growing text before the reply was complete.
        assert len(set(partial_lengths)) >= 3 and partial_lengths[0] < len(reply.text)
        assert [type(w) for w in app.query("#conversation > *") if not isinstance(w, Note)] == [UserMessage, ReplyView]
    rows = stored_messages(tmp_path)
    assert [r[:2] for r in rows] == [("user", "What is the capital of France?"), ("assistant", reply.text)]
    assert rows[1][2] == pytest.approx(reply.reward) and '"mode": "args-greedy"' in rows[1][4]


async def test_escape_cancels_and_keeps_what_was_produced(engine, tmp_path, monkeypatch):
    streaming_slowly(engine, monkeypatch)
    app = make_app(engine, tmp_path, settings=DecodingSettings(max_new_tokens=400))
    async with app.run_test(size=SIZE) as pilot:
        view = await streaming_a_long_reply(app, pilot)
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        reply = view.reply
        assert reply.stop_reason == "cancelled"
        assert len(reply.text) > 10 and len(reply.pieces) < 400
        assert "CANCELLED" in text_of(view.query_one(".reply-meta")) and view.has_class("-cancelled")
        assert not app.busy
    assert stored_messages(tmp_path)[-1][1:4:2] == (reply.text, "cancelled")


async def test_mode_and_knobs_change_live_and_are_used(engine, tmp_path):
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f2")
        assert app.settings.mode == "args-stochastic"
        assert "args-stochastic" in text_of(app.query_one(StatusBar))
        await pilot.press("f2")
        assert app.settings.mode == "greedy"
        await enter_knob(app, pilot, "max_new_tokens", "12")
        assert app.settings.max_new_tokens == 12 and not isinstance(app.screen, KnobsScreen)
        assert "max=12" in text_of(app.query_one(StatusBar))
        view = await send(app, pilot, "Name a colour.")
        assert view.reply.settings["mode"] == "greedy" and view.reply.settings["max_new_tokens"] == 12
        assert view.reply.override_rate is None  # no search in greedy mode
        assert math.isfinite(view.reply.reward)  # still scored by the guide RM


async def test_the_status_bar_shows_the_knobs_of_the_mode_in_use(engine, tmp_path):
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        for field, value in (("top_p", "0.5"), ("n", "6"), ("seed", "7")):
            await enter_knob(app, pilot, field, value)
        await pilot.press("f2", "f2", "f2", "f2")
        status = text_of(app.query_one(StatusBar))
        assert status.startswith("history:on │ nucleus top-p=0.5 T=1 seed=7 max=16"), status
        await pilot.press("f2")
        assert text_of(app.query_one(StatusBar)).startswith("history:on │ best-of-n n=6 k=10 T=1 seed=7 max=16")
        await enter_knob(app, pilot, "seed", str(2**63 - 1))
        assert f"seed={2**63 - 1} " in text_of(app.query_one(StatusBar))  # every digit of it


async def test_bad_knob_is_refused_with_a_message(engine, tmp_path):
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await enter_knob(app, pilot, "k", "0")
        assert isinstance(app.screen, KnobsScreen)
        assert "k must be at least 1" in text_of(app.screen.query_one("#knobs-error"))
        assert app.settings.k == QUICK.k


async def test_knobs_refuse_a_reply_length_that_leaves_no_room_for_the_prompt(engine, tmp_path):
    app = make_app(engine, tmp_path)
    n_ctx = engine.policy.n_ctx
    async with app.run_test(size=SIZE) as pilot:
        await enter_knob(app, pilot, "max_new_tokens", str(n_ctx))  # every prompt would then fail to fit
        assert isinstance(app.screen, KnobsScreen)
        assert f"leaves no room for the prompt in the {n_ctx}-token context" in text_of(app.screen.query_one("#knobs-error"))
        assert app.settings.max_new_tokens == QUICK.max_new_tokens
        await enter_knob(app, pilot, "max_new_tokens", str(n_ctx - 1))
        assert app.settings.max_new_tokens == n_ctx - 1


async def test_objective_weights_are_a_live_knob_shown_in_the_status_bar_and_the_reply(engine, tmp_path):
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        # the guide's defaults; the harmless one counts only where its gate finds the prompt calls for it
        assert "harmless=2 (gated) helpful=1" in text_of(app.query_one(StatusBar))
        await enter_knob(app, pilot, "objectives", "kindness=1")
        assert "has no objective 'kindness'" in text_of(app.screen.query_one("#knobs-error"))
        await enter_knob(app, pilot, "objectives", "helpful=1,harmless=0.5")
        assert app.settings.objectives == (("helpful", 1.0), ("harmless", 0.5))
        assert "harmless=0.5 (gated) helpful=1" in text_of(app.query_one(StatusBar))
        view = await send(app, pilot, "Name a colour.")
        by, weights = view.reply.objective_rewards, view.reply.objective_weights
        assert set(by) == {"helpful", "harmless"}
        assert weights["helpful"] == 1.0 and 0 <= weights["harmless"] <= 0.5  # after the harmless gate
        assert view.reply.reward == pytest.approx(by["helpful"] + weights["harmless"] * by["harmless"], abs=1e-6)
        meta = text_of(view.query_one(".reply-meta"))
        assert f"harmless {by['harmless']:+.2f}, helpful {by['helpful']:+.2f}" in meta
        assert f"weights harmless {weights['harmless']:.2g}, helpful 1" in meta


async def test_compare_answers_by_greedy_and_by_args_side_by_side(engine, tmp_path):
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"How do I boil an egg?", "f5")
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        await screen.workers.wait_for_complete()
        await pilot.pause()
        assert [r.settings["mode"] for r in screen.results] == ["greedy", "args-greedy"]
        for reply in screen.results:
            assert reply.text.strip() and math.isfinite(reply.reward)
        views = list(screen.query(ReplyView))
        assert [v.title for v in views] == ["greedy", "args-greedy"]
        assert all(f"reward {v.reply.reward:+.2f}" in text_of(v.query_one(".reply-meta")) for v in views)
        refusals = text_of(screen.query_one("#compare-refusals"))
        assert refusals.startswith("refusals so far: greedy ") and "args-greedy " in refusals and "/1 (" in refusals
        assert screen.refusals["greedy"][1] == screen.refusals["args-greedy"][1] == 1
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


async def test_a_comparison_cancelled_midway_shows_both_sides_ended_and_keeps_only_the_tally(engine, tmp_path, monkeypatch):
    """Esc during the greedy side left the ARGS column saying 'generating… (Esc cancels)' for good, and the
    refusal line went on saying 'this prompt: …' about the prompt compared before."""
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(*"Name a fruit.", "f5")
        screen = app.screen
        await screen.workers.wait_for_complete()
        await pilot.pause()
        assert "this prompt: " in text_of(screen.query_one("#compare-refusals"))
        screen.settings = screen.settings.with_(max_new_tokens=400)
        screen.query_one("#compare-prompt").value = "Write a long story about a dragon."
        streaming_slowly(engine, monkeypatch)
        await pilot.press("enter")
        greedy, args = screen.query(ReplyView)
        await until(pilot, lambda: len(greedy.reply.text) > 10)  # a few tokens of the greedy side have streamed
        tally = text_of(screen.query_one("#compare-refusals"))
        assert tally.startswith("refusals so far: greedy 0/1") and "this prompt" not in tally, tally
        await pilot.press("escape")
        await screen.workers.wait_for_complete()
        await pilot.pause()
        assert [view.reply.stop_reason for view in (greedy, args)] == ["cancelled", "cancelled"]
        for view in (greedy, args):
            assert "CANCELLED" in text_of(view.query_one(".reply-meta")) and not view.has_class("-streaming")
        assert args.reply.text == "" and len(greedy.reply.text) > 10
        assert text_of(screen.query_one("#compare-refusals")) == tally  # a cancelled comparison is not counted
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


async def test_compare_says_all_it_has_to_say_at_60_columns(engine, tmp_path):
    """Its hint lost 'Esc cancels/closes' and its refusal line 'this prompt: …', what the line is for."""
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.press(*"Name a fruit.", "f5")
        await app.screen.workers.wait_for_complete()
        await pilot.pause()
        assert "this prompt: " in str(app.screen.query_one("#compare-refusals").content)
        assert_labels_shown_whole(app.screen, app.screen)


async def test_compare_columns_follow_their_replies_to_the_reward_line(engine, tmp_path):
    """In a short terminal each column stayed at its top: the reward, the point of comparing, was out of sight."""
    app = make_app(engine, tmp_path, settings=DecodingSettings(max_new_tokens=64))
    async with app.run_test(size=(60, 15)) as pilot:
        await pilot.press(*"Write a poem about rain.", "f5")
        screen = app.screen
        await screen.workers.wait_for_complete()
        await pilot.pause()

        def at_reward_line(view) -> bool:
            column, meta = view.parent, view.query_one(".reply-meta")
            return column.scroll_y == column.max_scroll_y and column.content_region.contains_region(meta.region)

        # the refusal line, set last, wraps to a second line: the columns lose a line, followed a frame later
        await until(pilot, lambda: all(at_reward_line(view) for view in screen.query(ReplyView)), tries=50)
        for view in screen.query(ReplyView):
            assert view.parent.max_scroll_y > 0 and at_reward_line(view)  # the reply is longer than the column


async def test_prompts_compared_and_chatted_are_recalled_by_up_in_both(engine, tmp_path):
    """F5 took the prompt out of the chat's input and ↑ never gave it back; in compare, ↑ recalled nothing."""
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Name a fruit.")
        await pilot.press(*"Name a colour.", "f5")
        screen = app.screen
        await screen.workers.wait_for_complete()
        compare_input = screen.query_one(PromptInput)
        compare_input.value = ""
        await pilot.press("up")
        assert compare_input.value == "Name a colour."
        await pilot.press("up")
        assert compare_input.value == "Name a fruit."
        await pilot.press("escape")
        await pilot.press("up")
        assert app.query_one(PromptInput).value == "Name a colour."


async def test_a_compare_column_scrolled_back_stays_put_while_its_reply_streams(engine, tmp_path, monkeypatch):
    streaming_slowly(engine, monkeypatch)
    app = make_app(engine, tmp_path, settings=DecodingSettings(max_new_tokens=400))
    async with app.run_test(size=(60, 15)) as pilot:
        await pilot.press(*"Write a long story about a dragon.", "f5")
        column = app.screen.query_one("#greedy-side")
        view = column.query_one(ReplyView)
        await until(pilot, lambda: column.max_scroll_y > 4)  # the reply is longer than its column
        column.focus()
        await pilot.press("pageup")
        read_at, shown = column.scroll_y, len(view.reply.text)
        assert read_at < column.max_scroll_y
        await until(pilot, lambda: len(view.reply.text) > shown + 20)
        assert len(view.reply.text) > shown + 20 and column.scroll_y == read_at
        await pilot.press("escape")
        await app.screen.workers.wait_for_complete()


def stored_conversation(tmp_path, turns: int = 6) -> None:
    """A conversation taller than the screen, for F6 then Enter to open."""
    from args_local.chat.history import History

    history = History(tmp_path / "history.sqlite")
    conversation = history.create_conversation("earlier")
    for i in range(turns):
        history.add_message(conversation, "user", f"Question {i}?")
        history.add_message(conversation, "assistant", f"Answer {i}.\n" + "More about it. " * 40)
    history.close()


async def test_scrolling_back_while_a_reply_streams_stays_put_until_the_end_is_scrolled_to(engine, tmp_path, monkeypatch):
    """Every streamed token scrolled the chat to its end: an earlier turn could not be read while a reply came."""
    streaming_slowly(engine, monkeypatch)
    stored_conversation(tmp_path)
    app = make_app(engine, tmp_path, settings=DecodingSettings(max_new_tokens=400))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6", "enter")
        await pilot.pause()
        await pilot.press(*"Write a long story about a dragon.", "enter")
        view = list(app.query(ReplyView))[-1]
        conversation = app.query_one("#conversation")
        conversation.focus()
        await pilot.press("pageup", "pageup")
        read_at = conversation.scroll_y
        assert read_at < conversation.max_scroll_y
        shown = len(view.reply.text)
        await until(pilot, lambda: len(view.reply.text) > shown + 20)  # while more of the reply streams in
        assert len(view.reply.text) > shown + 20 and conversation.scroll_y == read_at
        await pilot.press("end")  # back at the end, it follows the reply again
        await until(pilot, lambda: len(view.reply.text) > shown + 60)
        await pilot.pause()
        assert conversation.scroll_y == conversation.max_scroll_y
        await pilot.press("escape")
        await app.workers.wait_for_complete()


async def test_page_up_and_down_scroll_the_chat_from_the_prompt(engine, tmp_path):
    """The prompt has the focus: the only way to scroll back by keyboard was Shift+Tab, which nothing told."""
    stored_conversation(tmp_path)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6", "enter")
        await pilot.pause()
        conversation = app.query_one("#conversation")
        await pilot.press("pageup")
        assert conversation.scroll_y < conversation.max_scroll_y and isinstance(app.focused, PromptInput)
        await pilot.press(*["pagedown"] * 3)
        assert conversation.scroll_y == conversation.max_scroll_y
        await pilot.press("f1")
        assert "scroll the conversation" in dict(app.screen.rows)["PgUp / PgDn"]


async def test_a_short_conversation_and_both_compared_replies_start_at_the_top(engine, tmp_path):
    """Following the end must not push what is shorter than the screen to its bottom, with a void above (Textual's
    anchor() does so): the two compared replies then stood at different heights."""
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Name a fruit.")
        conversation = app.query_one("#conversation")
        assert conversation.scroll_y == 0 and conversation.query_one(UserMessage).region.y == 1  # below its margin
        await pilot.press(*"Name a colour.", "f5")
        await app.screen.workers.wait_for_complete()
        await pilot.pause()
        greedy, args = app.screen.query(ReplyView)
        assert greedy.region.y == args.region.y == greedy.parent.content_region.y + 1


async def test_the_chat_stays_at_its_end_when_the_terminal_is_resized(engine, tmp_path):
    """Made narrower, the replies took more lines and the view stayed where it was: the last reply out of sight."""
    stored_conversation(tmp_path)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f6", "enter")
        await pilot.pause()
        conversation = app.query_one("#conversation")
        for size in ((60, 20), (120, 40), (60, 20)):
            await pilot.resize_terminal(*size)
            await pilot.pause()
            assert conversation.scroll_y == conversation.max_scroll_y > 0, size


async def test_restarted_app_finds_the_conversation_in_history_with_each_replys_footer(engine, tmp_path):
    first = make_app(engine, tmp_path)
    async with first.run_test(size=SIZE) as pilot:
        view = await send(first, pilot, "Tell me about owls.")
        reply_text, footer = view.reply.text, text_of(view.query_one(".reply-meta"))
    # the footer's figures beyond the history's columns: rewards and weights by objective, speed
    assert all(figure in footer for figure in (", helpful ", "weights harmless ", "tok/s")), footer
    second = make_app(engine, tmp_path)
    async with second.run_test(size=SIZE) as pilot:
        await pilot.press("up")  # prompts from earlier sessions can be recalled
        assert second.query_one(PromptInput).value == "Tell me about owls."
        await pilot.press("ctrl+u", "f6")
        assert isinstance(second.screen, HistoryScreen)
        options = second.screen.query_one("#conversations")
        assert "Tell me about owls." in str(options.get_option_at_index(0).prompt)
        await pilot.press("enter")
        await pilot.pause()
        assert [t.content for t in second.session.turns] == ["Tell me about owls.", reply_text]
        assert text_of(second.query_one(UserMessage)) == "Tell me about owls."
        assert text_of(second.query_one(ReplyView).query_one(".reply-meta")) == footer
        # The next turn continues that conversation, with the earlier turn in the model's view.
        await send(second, pilot, "And about hawks?")
        assert [t.role for t in second.session.turns] == ["user", "assistant", "user", "assistant"]
    assert len(stored_messages(tmp_path)) == 4


async def test_a_turn_sent_while_another_program_holds_the_history_is_saved_once_it_lets_go(engine, tmp_path):
    """A save that waited over 2 s for the lock switched history off for the session, the turn unsaved."""
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Name a fruit.")
        with write_locked(tmp_path / "history.sqlite"):
            started = time.monotonic()
            view = await send(app, pilot, "Name a colour.")  # the chat answers meanwhile
            await asyncio.sleep(3 - (time.monotonic() - started))
            assert len(stored_messages(tmp_path)) == 2  # the turn is waiting for the lock
        assert app.session.history is not None and await asyncio.to_thread(app.session.history.wait, 10)
        await pilot.pause()
        assert app.session.history is not None and "history:OFF" not in text_of(app.query_one(StatusBar))
    assert [r[:2] for r in stored_messages(tmp_path)][2:] == [("user", "Name a colour."), ("assistant", view.reply.text)]


async def test_quitting_while_a_turn_waits_for_the_history_lock_says_so_and_saves_it(tmp_path):
    """Ctrl+Q with a turn still waiting for another program's lock: the app, gone, would have lost it."""
    import threading

    db = tmp_path / "history.sqlite"
    app = ChatApp(db_path=db, judge_path=tmp_path / "no-judge", rm_threads=1)
    notes = []
    app.notify = lambda message, **kw: notes.append(message)
    async with app.run_test(size=SIZE) as pilot:
        locker = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        locker.execute("BEGIN IMMEDIATE")
        app.session.add_prompt("Name a fruit.")  # as a prompt sent
        threading.Timer(3, lambda: (locker.execute("COMMIT"), locker.close())).start()
        await pilot.press("ctrl+q")
        assert any("Saving the last turn" in note for note in notes), notes
    assert stored_messages(tmp_path)[0][:2] == ("user", "Name a fruit.")


async def test_a_conversation_open_in_another_chat_stays_there_with_a_note_saying_so(engine, tmp_path):
    with other_chat(tmp_path / "history.sqlite") as other_starts:
        other_starts("Tell me about owls.")
        app = make_app(engine, tmp_path)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("f6", "enter")
            await pilot.pause()
            assert app.session.conversation_id is None and not app.session.turns
            notes = [text_of(n) for n in app.query(Note)]
            assert "“Tell me about owls.” is open in another args-local chat" in notes[-1], notes


def test_reward_colours_run_in_five_bands_and_overrides_by_rank():
    bands = [reward_style(r) for r in (-2.0, -0.5, 0.0, 0.5, 2.0)]
    assert bands == ["bold red", "red", "", "green", "bold green"]
    assert reward_style(None) == "dim"  # a token no reward was computed for (greedy, a skipped step)
    assert [override_style(i) for i in (None, 0, 1, 5)] == ["dim", "", "black on yellow", "black on dark_orange"]


async def test_colouring_toggle_and_help_screen(engine, tmp_path):
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await send(app, pilot, "Say hello.")
        await pilot.press("f4")
        assert app.colouring == "reward" and view.colouring == "reward"
        body = view.body()
        assert body.plain == view.reply.text
        # each token is coloured by the reward that steered it (ramped in over the first tokens, so a
        # short reply's may all sit in the uncoloured middle band): the spans are exactly those styles
        assert view.reply.pieces and all(piece.reward is not None for piece in view.reply.pieces)
        expected, start = [], 0
        for piece in view.reply.pieces:
            if piece.text and reward_style(piece.reward):
                expected.append((start, start + len(piece.text), reward_style(piece.reward)))
            start += len(piece.text)
        assert [(span.start, span.end, span.style) for span in body.spans] == expected
        await pilot.press("f4")
        assert app.colouring == "override"
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        keys = dict(app.screen.rows)
        for key in ("Esc", "F1", "F2", "F3", "F4", "F5", "F6", "F7", "F8", "F9", "Ctrl+R", "Ctrl+Y", "Ctrl+N", "Ctrl+T",
                    "Ctrl+Q", "↑ / ↓"):
            assert keys[key]  # every key is listed with what it does
        assert "greedy vs ARGS" in keys["F5"]
        assert "answer the last prompt again" in keys["Ctrl+R"] and "clipboard" in keys["Ctrl+Y"]
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_f1_opens_the_help_from_every_dialog_and_closes_it_again(engine, tmp_path):
    """The footer under every dialog says F1 Help; the dialogs took F1 and nothing happened."""
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        for key in ("f3", "f5", "f6", "f7", "f8"):
            await pilot.press(key)
            dialog = app.screen
            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen), key
            await pilot.press("f1")
            assert app.screen is dialog, key
            await pilot.press("escape")
            assert len(app.screen_stack) == 1 and isinstance(app.focused, PromptInput), key
        await pilot.press("?")  # typed into the prompt, which is focused
        assert app.query_one(PromptInput).value == "?" and len(app.screen_stack) == 1


async def test_model_info_says_what_the_export_checked_in_words(engine, tmp_path):
    """F8 showed the manifest's source and validation as Python dicts, some 17 lines that pushed the
    judge and history rows off a 24-row screen."""
    from rich.console import Console

    from args_local.chat.model_info_screen import ModelInfoScreen

    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        assert isinstance(app.screen, ModelInfoScreen)
        console = Console(width=SIZE[0], record=True)
        console.print(app.screen.table)
        lines = console.export_text().splitlines()
    text = " ".join(" ".join(lines).split())  # the rows as read, wherever they wrapped
    assert "{" not in text and "'" not in text, text
    assert "onnxruntime matches torch within" in text and "int8 (dynamic) ranks" in text
    assert "heads harmless head.npz, helpful head-helpful.npz" in text
    assert "harmless (default weight 2, gated by the last user message), helpful (default weight 1)" in text
    assert len(lines) <= SIZE[1] - 2, text  # with the title above it, it fits the screen


async def test_square_brackets_the_user_typed_are_shown_as_typed_not_read_as_markup(engine, tmp_path):
    """A first prompt "What does [/b] mean?" made F6 stop the app (exit 1, a crash log) every time after, its
    title read as Textual markup; so did a knob typed as [/x], and F8 with --db in a folder named [/old]."""
    from rich.console import Console

    db = tmp_path / "[/old]" / "history.sqlite"
    app = ChatApp(engine=engine, db_path=db, judge_path=tmp_path / "no-judge", rm_threads=1, settings=QUICK)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "What does [/b] mean?")
        await pilot.press("f6")
        await pilot.pause()
        assert "What does [/b] mean?" in str(app.screen.query_one("#conversations").get_option_at_index(0).prompt)
        assert text_of(app.screen.query_one("#history-count")) == "1 conversation"  # not "1 conversations"
        await pilot.press("escape")
        await enter_knob(app, pilot, "k", "[/x]")
        assert "'[/x]' is not an integer" in text_of(app.screen.query_one("#knobs-error"))
        await pilot.press("escape", "f8")
        await pilot.pause()
        console = Console(width=400, record=True)
        console.print(app.screen.table)
        assert f"{db} — on" in console.export_text()
    assert app.crash_log is None


@pytest.mark.parametrize("reply, lines", [
    # Rich's Markdown drops HTML: "Use the <br> tag" showed as "Use the  tag"
    ("Use the <br> tag, as in `a<br>b`.\n\n<p>Or a new paragraph.</p>",
     ["Use the <br> tag, as in a<br>b.", "<p>Or a new paragraph.</p>"]),
    # and joins a paragraph's lines: a poem, streamed line by line, became one line once finished
    ("In the realm of rain,\nwhere shadows play.", ["In the realm of rain,", "where shadows play."]),
])
async def test_a_finished_reply_shows_its_html_and_its_line_breaks_as_written(engine, tmp_path, reply, lines):
    from textual.geometry import Region

    from args_local.chat.history import History

    history = History(tmp_path / "history.sqlite")
    conversation = history.create_conversation("a reply")
    history.add_message(conversation, "user", "Show me.")
    history.add_message(conversation, "assistant", reply)
    history.close()
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6", "enter")
        await pilot.pause()
        body = app.query_one(ReplyView).query_one(".reply-body")
        shown = [strip.text.strip() for strip in body.render_lines(Region(0, 0, *body.size))]
        assert [line for line in shown if line] == lines


async def test_export_writes_markdown_and_says_where(engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await send(app, pilot, "Name a fruit.")
        await pilot.press("f9")
        await pilot.pause()
        exported = list(tmp_path.glob("args-local-chat-*.md"))
        assert len(exported) == 1
        assert "Name a fruit." in exported[0].read_text() and view.reply.text.strip() in exported[0].read_text()
        assert str(exported[0]) in text_of(list(app.query(Note))[-1])


async def test_the_open_conversation_renamed_in_history_is_exported_under_its_new_title(engine, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Name a fruit.")
        await pilot.press("f6", "r", "ctrl+u", *"Fruit", "enter", "escape", "f9")
        await pilot.pause()
    exported = list(tmp_path.glob("args-local-chat-*.md"))
    assert [path.name for path in exported] == [f"args-local-chat-{app.session.conversation_id}-fruit.md"]
    assert exported[0].read_text().startswith("# Fruit\n")


async def test_reply_error_is_shown_and_the_app_goes_on(engine, tmp_path):
    no_reward = Engine(engine.policy, None)  # ARGS needs a reward model: the engine refuses
    app = make_app(no_reward, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        view = await send(app, pilot, "Hello?")
        assert "needs a reward model" in view.reply.error
        assert "needs a reward model" in text_of(view.query_one(".reply-meta")) and view.has_class("-error")
        await pilot.press("f2", "f2")  # greedy needs no reward model
        view = await send(app, pilot, "Hello?")
        assert view.reply.error is None and view.reply.text.strip()


async def test_too_long_conversation_drops_oldest_turns_with_a_notice_and_dims_them(engine, tmp_path):
    small = Engine.load(threads=1, n_ctx=256)
    app = make_app(small, tmp_path, settings=QUICK.with_(mode="greedy"))
    async with app.run_test(size=SIZE) as pilot:
        for i in range(3):  # about 90 tokens each: the third leaves no room for the first
            app.query_one(PromptInput).value = f"Question {i}: " + "tell me more about the sea " * 12
            view = await send(app, pilot, "")
        assert view.reply.error is None and view.reply.text.strip()
        shown = list(app.query("#conversation > *"))
        notes = [w for w in shown if isinstance(w, Note) and "dropped the" in text_of(w) and "oldest turn" in text_of(w)]
        assert len(notes) == 1
        assert shown.index(notes[0]) == shown.index(view) - 1  # above the reply it is about, not after it
        # the turns the model no longer sees are dimmed in the transcript, those it saw are not
        dropped = view.reply.dropped_turns
        turns = [w for w in shown if isinstance(w, (UserMessage, ReplyView))]
        assert dropped >= 2 and len(turns) == 6
        assert [w.has_class("-left-out") for w in turns] == [True] * dropped + [False] * (6 - dropped)
        assert turns[0].styles.text_opacity == 0.5 and turns[1].styles.text_opacity == 0.5
        assert turns[-1].styles.text_opacity == 1


async def test_a_prompt_too_long_for_the_context_does_not_push_out_the_turns_after_it(engine, tmp_path):
    app = make_app(engine, tmp_path)
    too_long = "Summarise this: " + "The quick brown fox jumps over the lazy dog. " * 500
    assert len(engine.policy.tokenize(too_long)) > engine.policy.n_ctx
    async with app.run_test(size=SIZE) as pilot:
        first = await send(app, pilot, "Name a fruit.")
        app.query_one(PromptInput).value = too_long
        failed = await send(app, pilot, "")
        assert "does not fit" in failed.reply.error
        await send(app, pilot, "Name a colour.")
        # the failed prompt is not sent again, so nothing had to be dropped to fit the context
        assert not any("dropped the" in text_of(n) for n in app.query(Note))
        assert app.session.model_messages()[:3] == [{"role": "user", "content": "Name a fruit."},
                                                     {"role": "assistant", "content": first.reply.text},
                                                     {"role": "user", "content": "Name a colour."}]


async def regenerate(app, pilot) -> ReplyView:
    """Ctrl+R, wait for the new reply to finish; return its view."""
    await pilot.press("ctrl+r")
    await app.workers.wait_for_complete()
    await pilot.pause()
    return list(app.query(ReplyView))[-1]


def meta_of(view) -> str:
    return text_of(view.query_one(".reply-meta"))


async def test_ctrl_r_answers_the_last_prompt_again_with_the_knobs_now_and_keeps_the_reply_before(engine, tmp_path):
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        first = await send(app, pilot, "Name a fruit.")
        await pilot.press("f2", "f2")  # args-greedy → greedy: what Ctrl+R is for, seeing what a knob does
        second = await regenerate(app, pilot)
        assert second is not first and first.reply.settings["mode"] == "args-greedy"
        assert second.reply.settings["mode"] == "greedy" and second.reply.override_rate is None
        assert second.reply.text.strip() and "greedy" in meta_of(second) and "REPLACED" not in meta_of(second)
        assert first.replaced and first.has_class("-replaced") and meta_of(first).startswith("↻ REPLACED · ")
        assert [type(w) for w in app.query("#conversation > *") if not isinstance(w, Note)] == [UserMessage, ReplyView,
                                                                                                ReplyView]
        prompt = {"role": "user", "content": "Name a fruit."}
        assert app.session.model_messages() == [prompt, {"role": "assistant", "content": second.reply.text}]
        await send(app, pilot, "And a colour?")  # the next prompt carries the new reply only
        assert app.session.model_messages()[:3] == [prompt, {"role": "assistant", "content": second.reply.text},
                                                     {"role": "user", "content": "And a colour?"}]
        assert "## Assistant — args-greedy" in app.session.to_markdown().split("## Assistant — greedy")[0]
        assert app.session.to_markdown().count(" · replaced") == 1
    rows = stored_messages(tmp_path)  # both replies, in order: nothing the user had is lost
    assert [r[:2] for r in rows[:3]] == [("user", "Name a fruit."), ("assistant", first.reply.text),
                                         ("assistant", second.reply.text)]
    assert '"mode": "args-greedy"' in rows[1][4] and '"mode": "greedy"' in rows[2][4]
    reopened = make_app(engine, tmp_path)
    async with reopened.run_test(size=SIZE) as pilot:
        await pilot.press("f6", "enter")
        await pilot.pause()
        views = list(reopened.query(ReplyView))
        assert [view.replaced for view in views] == [True, False, False]
        assert meta_of(views[0]).startswith("↻ REPLACED · ") and views[0].has_class("-replaced")
        assert reopened.session.model_messages()[1] == {"role": "assistant", "content": second.reply.text}


async def test_ctrl_r_answers_a_failed_reply_again_and_says_why_it_cannot_before_any_prompt(engine, tmp_path):
    no_reward = Engine(engine.policy, None)  # ARGS needs a reward model: the first reply fails
    app = make_app(no_reward, tmp_path)
    notes = []
    app.notify = lambda message, **kw: notes.append(message)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert notes == ["No reply to regenerate yet: send a prompt first."] and not app.query(ReplyView)
        failed = await send(app, pilot, "Hello?")
        assert "needs a reward model" in failed.reply.error
        await pilot.press("f2", "f2")  # greedy needs no reward model
        again = await regenerate(app, pilot)
        assert again is not failed and again.reply.error is None and again.reply.text.strip()
        assert [t.role for t in app.session.turns] == ["user", "assistant"] and not failed.replaced
    assert [r[:2] for r in stored_messages(tmp_path)] == [("user", "Hello?"), ("assistant", again.reply.text)]


async def test_ctrl_r_while_a_reply_streams_is_refused_and_a_cancelled_reply_can_be_answered_again(engine, tmp_path,
                                                                                                   monkeypatch):
    streaming_slowly(engine, monkeypatch)
    app = make_app(engine, tmp_path, settings=DecodingSettings(max_new_tokens=400))
    notes = []
    app.notify = lambda message, **kw: notes.append(message)
    async with app.run_test(size=SIZE) as pilot:
        cancelled = await streaming_a_long_reply(app, pilot)
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert notes == ["A reply is still coming; Esc cancels it."] and len(app.query(ReplyView)) == 1
        await pilot.press("ctrl+y")  # nor is the streaming reply copied, half done
        assert notes[-1].startswith("A reply is still coming: Ctrl+Y copies it once done") and app.clipboard == ""
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        app.settings = app.settings.with_(max_new_tokens=16)
        again = await regenerate(app, pilot)
        assert cancelled.reply.stop_reason == "cancelled" and cancelled.replaced
        assert again.reply.stop_reason in ("end_of_turn", "max_new_tokens") and not again.replaced
        assert app.session.model_messages()[1:] == [{"role": "assistant", "content": again.reply.text}]


async def test_ctrl_y_copies_the_last_reply_to_the_clipboard(engine, tmp_path):
    app = make_app(engine, tmp_path)
    notes = []
    app.notify = lambda message, **kw: notes.append(message)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+y")
        assert notes == ["No reply to copy yet."] and app.clipboard == ""
        first = await send(app, pilot, "Name a fruit.")
        await enter_knob(app, pilot, "max_new_tokens", "4")  # a reply shorter than the first
        second = await regenerate(app, pilot)
        await pilot.press("ctrl+y")
        text = second.reply.text
        assert app.clipboard == text and text.strip() and notes[-1] == f"reply copied ({len(text)} characters)"
        assert first.replaced and first.reply.text != text  # the last reply is copied, not the one it replaced


async def test_a_pasted_paragraph_is_sent_whole_with_its_line_breaks(engine, tmp_path):
    from textual import events

    sent = "Summarise this:\nThe sea is big.\nIt is also deep."
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        prompt_input = app.query_one(PromptInput)
        prompt_input.focus()
        app.post_message(events.Paste("Summarise this:\r\nThe sea is big.\nIt is also deep.\n"))  # a bracketed paste
        await pilot.pause()
        assert all(line in prompt_input.value for line in sent.splitlines())  # every line, on the one-line input
        await send(app, pilot, "")
        assert text_of(app.query_one(UserMessage)) == sent
        assert app.session.model_messages()[0] == {"role": "user", "content": sent}
        await pilot.press("up")  # recalled as it was sent
        assert prompt_input.prompt == sent
    assert stored_messages(tmp_path)[0][:2] == ("user", sent)


async def test_damaged_history_file_app_chats_without_history_and_keeps_the_bytes(engine, tmp_path):
    db = tmp_path / "history.sqlite"
    garbage = b"SQLite format 3\x00" + b"\x13" * 5000
    db.write_bytes(garbage)
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        assert any("history database" in text_of(n) and "untouched" in text_of(n) for n in app.query(Note))
        assert "history:OFF" in text_of(app.query_one(StatusBar))
        view = await send(app, pilot, "Still working?")
        assert view.reply.text.strip() and math.isfinite(view.reply.reward)
    assert db.read_bytes() == garbage


async def status_while_generating_without_history(app, size) -> str:
    """What of the status bar is on screen while a reply streams, the history being off."""
    from textual.geometry import Region

    async with app.run_test(size=size) as pilot:
        await pilot.press(*"Write a long story about a dragon.", "enter")
        await pilot.pause()
        status = app.query_one(StatusBar)
        on_screen = " ".join(strip.text for strip in status.render_lines(Region(0, 0, *status.size)))
        await pilot.press("escape")
        await app.workers.wait_for_complete()
    return on_screen


async def test_the_status_bar_shows_all_of_itself_in_an_80_column_terminal(engine, tmp_path):
    (tmp_path / "history.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x13" * 5000)  # history off
    app = make_app(engine, tmp_path, settings=DecodingSettings(max_new_tokens=400))
    on_screen = await status_while_generating_without_history(app, SIZE)
    assert "history:OFF" in on_screen and "generating" in on_screen, on_screen


async def test_history_off_and_generating_stay_in_sight_at_60_columns_with_two_reward_models(engine, tmp_path):
    from args_local.reward import load_reward_model

    (tmp_path / "history.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x13" * 5000)  # history off
    both = Engine(engine.policy, load_reward_model("guide+encoder", 1, use_gpu=False))
    weights = {"guide.helpful": 1.0, "guide.harmless": 0.5, "encoder.harmless": 1.0}
    app = make_app(both, tmp_path, settings=DecodingSettings(mode="args-stochastic", max_new_tokens=400,
                                                             repeat_penalty=1.1, objectives=weights))
    on_screen = await status_while_generating_without_history(app, (60, 24))
    assert "history:OFF" in on_screen and "generating" in on_screen, on_screen
    assert "args-stochastic" in on_screen, on_screen  # the mode too, where a reply's footer is far off


async def test_missing_model_shows_how_to_fix_it(tmp_path):
    def load():
        return Engine.load(policy=tmp_path / "missing.gguf", threads=1)

    app = ChatApp(load_engine=load, db_path=tmp_path / "history.sqlite", judge_path=tmp_path / "no-judge")
    async with app.run_test(size=SIZE) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        errors = [text_of(n) for n in app.query(Note) if n.has_class("-error")]
        assert errors and "policy model not found" in errors[0] and "tools/setup.sh" in errors[0]
        await pilot.press(*"hello", "enter")
        await pilot.pause()
        assert "No model loaded" in text_of(list(app.query(Note))[-1])
        assert app.is_running


async def test_system_prompt_is_used_and_stored(engine, tmp_path):
    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f7")
        await pilot.press(*"Answer in French.", "enter")
        await pilot.pause()
        assert app.session.system == "Answer in French."
        await send(app, pilot, "Say hello.")
    db = sqlite3.connect(tmp_path / "history.sqlite")
    assert db.execute("SELECT system FROM conversations").fetchall() == [("Answer in French.",)]


async def test_a_pasted_system_prompt_keeps_all_its_lines(engine, tmp_path):
    from textual import events

    app = make_app(engine, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f7")
        app.post_message(events.Paste("You are terse.\nAnswer in French."))
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        assert app.session.system == "You are terse.\nAnswer in French."


async def test_the_command_line_system_prompt_applies_to_every_new_conversation(engine, tmp_path):
    app = make_app(engine, tmp_path, system="Answer in French.")  # args-local chat --system ...
    async with app.run_test(size=SIZE) as pilot:
        await send(app, pilot, "Say hello.")
        await pilot.press("f7", "ctrl+u", *"Be brief.", "enter")  # this conversation only
        await pilot.pause()
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.session.system == "Answer in French."
        assert any(text_of(n) == "system prompt: Answer in French." for n in app.query(Note))
        await send(app, pilot, "Say goodbye.")
    db = sqlite3.connect(tmp_path / "history.sqlite")
    assert db.execute("SELECT system FROM conversations ORDER BY id").fetchall() == [("Be brief.",),
                                                                                      ("Answer in French.",)]


async def test_broken_judge_is_reported_once_and_replies_go_on(engine, tmp_path):
    judge_dir = tmp_path / "judge"
    judge_dir.mkdir()
    (judge_dir / "manifest.json").write_text("{not json")
    app = ChatApp(engine=engine, db_path=tmp_path / "history.sqlite", judge_path=judge_dir, rm_threads=1,
                  settings=QUICK)
    async with app.run_test(size=SIZE) as pilot:
        first = await send(app, pilot, "Hello.")
        second = await send(app, pilot, "Again.")
        judge_notes = [n for n in app.query(Note) if "judge reward model off" in text_of(n)]
        assert len(judge_notes) == 1 and "not valid JSON" in text_of(judge_notes[0])
        for view in (first, second):
            assert view.reply.judge_reward is None and math.isfinite(view.reply.reward)


def test_the_judge_runs_on_the_command_lines_rm_threads(tmp_path):
    from args_local.cli import build_parser
    from args_local.commands.chat import chat_app

    def judge_threads(*options: str) -> int | None:
        args = build_parser().parse_args(["chat", "--db", str(tmp_path / "h.sqlite"), *options])
        return chat_app(args, QUICK).judge.threads

    assert judge_threads("--threads", "1", "--rm-threads", "3") == 3
    assert judge_threads("--threads", "1") is None  # a reward model's default, not llama.cpp's count for the policy


def test_the_chat_starts_with_room_for_replies_that_end_by_themselves(tmp_path):
    """At the 128 new tokens of generate most chat replies were cut short; half a smaller context stays for the prompt."""
    from args_local.cli import build_parser
    from args_local.commands.chat import chat_settings

    def max_new_tokens(*options: str) -> int:
        return chat_settings(build_parser().parse_args(["chat", *options])).max_new_tokens

    assert max_new_tokens() == 512 and max_new_tokens("--n-ctx", "512") == 256


@pytest.mark.skipif(not home.default_judge().is_dir(), reason="no judge reward model installed")
async def test_judge_reward_shows_beside_the_guide_reward(engine, tmp_path):
    app = ChatApp(engine=engine, db_path=tmp_path / "history.sqlite", judge_path=home.default_judge(),
                  rm_threads=1, settings=QUICK)
    def judge_row() -> str:
        return next(str(value) for name, value in zip(*(column.cells for column in app.screen.table.columns))
                    if name == "judge RM")

    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f8")
        assert judge_row().endswith("loads with the first reply"), judge_row()
        await pilot.press("escape")
        view = await send(app, pilot, "How do I make tea?")
        assert math.isfinite(view.reply.judge_reward)
        assert f"judge {view.reply.judge_reward:+.2f}" in text_of(view.query_one(".reply-meta"))
        await pilot.press("f8")  # it said 'loaded on first reply' for good, as if it never had been
        assert judge_row().endswith("— loaded"), judge_row()


async def test_quitting_mid_reply_saves_it_as_cancelled(engine, tmp_path, monkeypatch):
    streaming_slowly(engine, monkeypatch)
    app = make_app(engine, tmp_path, settings=DecodingSettings(max_new_tokens=400))
    async with app.run_test(size=SIZE) as pilot:
        await streaming_a_long_reply(app, pilot, "Explain in detail, step by step, how a car engine works.")
        await pilot.press("ctrl+q")
        await pilot.pause()
    role, content, _, stop_reason, _ = stored_messages(tmp_path)[-1]
    assert (role, stop_reason) == ("assistant", "cancelled") and len(content) > 10


# --- faults (issue 12) ----------------------------------------------------------------------------
async def test_a_bug_exits_1_with_its_traceback_in_a_log_and_the_history_intact(tmp_path, monkeypatch):
    from args_local.chat.history import History

    monkeypatch.setenv("ARGS_LOCAL_HOME", str(tmp_path / "home"))
    db = tmp_path / "history.sqlite"
    history = History(db)
    earlier = history.create_conversation("earlier")
    history.add_message(earlier, "user", "a turn saved before the crash")
    history.close()
    app = ChatApp(db_path=db, judge_path=tmp_path / "no-judge", rm_threads=1)
    async with app.run_test(size=SIZE):
        app.call_later(lambda: 1 / 0)  # stands in for any bug in a handler
    assert app.return_code == 1
    log = app.crash_log
    assert log is not None and log.parent == tmp_path / "home" / "logs"
    assert "Traceback" in log.read_text() and "ZeroDivisionError" in log.read_text()
    assert [m.content for m in History(db).messages(earlier)] == ["a turn saved before the crash"]


async def test_knobs_refuse_a_negative_seed(tmp_path):
    app = ChatApp(db_path=tmp_path / "history.sqlite", judge_path=tmp_path / "no-judge", rm_threads=1)
    async with app.run_test(size=SIZE) as pilot:
        await enter_knob(app, pilot, "seed", "-1")
        assert isinstance(app.screen, KnobsScreen)
        assert "seed must be an integer from 0 to" in text_of(app.screen.query_one("#knobs-error"))
        assert app.settings.seed == 0


def assert_labels_shown_whole(screen, dialog=None) -> None:
    """Every Label of a dialog shows all its text (wrapped as need be) inside the dialog's frame (default: the
    screen's Vertical)."""
    from textual.containers import Vertical
    from textual.geometry import Region
    from textual.widgets import Label

    dialog = dialog or screen.query_one(Vertical)
    for label in screen.query(Label):
        shown = " ".join(strip.text for strip in label.render_lines(Region(0, 0, *label.outer_size)))
        assert " ".join(str(label.content).split()) in " ".join(shown.split()), label.content
        assert dialog.content_region.contains_region(label.region), label.content  # none of it cut off


async def test_every_knob_is_named_in_full(tmp_path):
    """The label column cut 'min-p (of top token; 0 = off)' to 'min-p (of top token; 0 =' at every width, and
    at 60 columns the title lost the end of 'Esc discards'."""
    app = ChatApp(db_path=tmp_path / "history.sqlite", judge_path=tmp_path / "no-judge", rm_threads=1)
    async with app.run_test(size=(60, 40)) as pilot:  # the narrowest terminal the chat is made for
        await pilot.press("f3")
        await pilot.pause()
        assert_labels_shown_whole(app.screen)


async def test_the_history_screen_says_all_it_has_to_say_at_60_columns(tmp_path):
    """Its key hint lost 'export · Esc close', and a refusal ('… open in another args-local chat; close it there
    first') lost its end: what to do."""
    with other_chat(tmp_path / "history.sqlite") as other_starts:
        other_starts("Tell me about owls.")
        app = ChatApp(db_path=tmp_path / "history.sqlite", judge_path=tmp_path / "no-judge", rm_threads=1)
        async with app.run_test(size=(60, 20)) as pilot:
            await pilot.press("f6", "d", "y")
            await pilot.pause()
            assert "close it there first" in str(app.screen.query_one("#history-status").content)
            assert_labels_shown_whole(app.screen)


async def test_the_history_filter_finds_a_conversation_by_a_word_in_a_message_and_opens_it(tmp_path):
    """Hundreds of saved conversations could only be scrolled through, newest first."""
    from textual.widgets import Input, OptionList

    from args_local.chat.history import History

    history = History(tmp_path / "history.sqlite")
    for topic in ("owls", "hawks", "otters", "dragons"):
        conversation = history.create_conversation(f"Tell me about {topic}.")
        history.add_message(conversation, "user", f"Tell me about {topic}.")
        history.add_message(conversation, "assistant", "They hunt at NIGHT." if topic == "owls" else "They nap.")
    history.close()
    app = ChatApp(db_path=tmp_path / "history.sqlite", judge_path=tmp_path / "no-judge", rm_threads=1)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f6")
        screen, shown = app.screen, lambda: [str(o.prompt) for o in app.screen.query_one(OptionList).options]
        assert isinstance(app.focused, OptionList) and len(shown()) == 4  # Enter still opens the newest at once
        await pilot.press("/", *"night")  # only in a reply: no title holds it
        assert len(shown()) == 1 and "Tell me about owls." in shown()[0] and app.focused is screen.query_one(Input)
        assert text_of(screen.query_one("#history-count")) == "1 of 4 conversations"
        await pilot.press("escape")  # clears the filter, the screen stays
        assert app.screen is screen and len(shown()) == 4 and not screen.query_one(Input).value
        await pilot.press(*"ters", "down", "d", "y")  # r, d and x act on the filtered list's highlighted one
        await pilot.pause()
        assert shown() == [] and text_of(screen.query_one("#history-count")) == "0 of 3 conversations"
        assert "otters" not in str([c.title for c in app.session.history.conversations()])  # not the newest: dragons
        await pilot.press("/", "escape", "escape")  # in the filter: clear it, then close
        assert app.screen is not screen
        await pilot.press("f6", "/", *"NIGHT", "enter")  # Enter in the filter opens the conversation it found
        await pilot.pause()
        assert [t.content for t in app.session.turns] == ["Tell me about owls.", "They hunt at NIGHT."]
        assert text_of(app.query_one(UserMessage)) == "Tell me about owls."


async def test_knobs_in_a_short_terminal_scroll_to_the_field_and_show_the_whole_error(tmp_path):
    from textual.containers import Vertical

    app = ChatApp(db_path=tmp_path / "history.sqlite", judge_path=tmp_path / "no-judge", rm_threads=1)
    async with app.run_test(size=(80, 16)) as pilot:  # too short for every field at once
        await enter_knob(app, pilot, "objectives", "helpful=x")
        dialog, field, error = (app.screen.query_one(q) for q in (Vertical, "#objectives", "#knobs-error"))
        assert "(got 'helpful=x')" in text_of(error)
        assert dialog.region.height <= 16 and error.region.height >= 2  # the long message wraps
        for widget in (field, error):  # scrolled into sight, inside the dialog's frame
            assert widget.region and dialog.content_region.contains_region(widget.region)


async def test_escape_during_the_prefill_of_a_long_prompt_stops_it_within_a_chunk(engine, tmp_path):
    app = make_app(engine, tmp_path, settings=DecodingSettings(max_new_tokens=64))
    prompt = "Summarise this text. " + "The quick brown fox jumps over the lazy dog again. " * 100  # ~5,000 characters
    prompt_tokens = len(engine.policy.tokenize(engine.policy.render_chat([{"role": "user", "content": prompt}])))
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(PromptInput).value = prompt
        app.query_one(PromptInput).focus()
        await pilot.press("enter", "escape")
        await app.workers.wait_for_complete()
        await pilot.pause()
        reply = list(app.query(ReplyView))[-1].reply
        assert reply.stop_reason == "cancelled" and reply.text == "" and not app.busy
        assert engine.policy.n_cached < prompt_tokens  # the prefill stopped part-way
        await pilot.press(*"Hi.", "enter")  # and the next prompt is taken at once
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert list(app.query(ReplyView))[-1].reply.stop_reason in ("end_of_turn", "max_new_tokens")


@pytest.mark.skipif(not home.default_judge().is_dir(), reason="no judge reward model installed")
def test_a_cancelled_reply_is_not_sent_to_the_judge(engine):
    import threading

    from args_local.chat.generation import run_reply
    from args_local.chat.judge import Judge

    judge, cancel = Judge(home.default_judge(), threads=1), threading.Event()
    cancel.set()  # Esc: the reply must end now, not after the judge has loaded and scored it
    reply = run_reply(engine, [{"role": "user", "content": "Tell me about tea."}], QUICK, system=None,
                      cancel=cancel, judge=judge)
    assert reply.stop_reason == "cancelled" and reply.judge_reward is None and judge._model is None


async def test_two_reward_models_weighed_together_in_the_chat(engine, tmp_path):
    from args_local.reward import load_reward_model

    both = Engine(engine.policy, load_reward_model("guide+encoder", 1, use_gpu=False))
    app = make_app(both, tmp_path, settings=QUICK.with_(objectives={"guide.helpful": 1.0, "encoder.harmless": 0.5}))
    async with app.run_test(size=SIZE) as pilot:
        assert "guide.harmless=0 guide.helpful=1 encoder.harmless=0.5 │" in text_of(app.query_one(StatusBar))
        assert gated_objectives(both.reward) == {"guide.harmless"}  # marked (gated) when weighed
        view = await send(app, pilot, "Name a colour.")
        by = view.reply.objective_rewards
        assert set(by) == {"guide.helpful", "guide.harmless", "encoder.harmless"}
        assert view.reply.reward == pytest.approx(by["guide.helpful"] + 0.5 * by["encoder.harmless"], abs=1e-6)
        assert f"encoder.harmless {by['encoder.harmless']:+.2f}" in text_of(view.query_one(".reply-meta"))
