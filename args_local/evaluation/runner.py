"""The resumable eval loop: each (prompt, method, w) reply is appended to DIR/replies.jsonl as it
finishes, so a rerun with the same DIR and settings only generates what is missing."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..engine import ARGS_MODES, Engine
from ..errors import UserError
from ..home import COMBINE, reward_model_dirs
from ..settings import DecodingSettings
from .metrics import cosine_rows
from .prompts import EvalPrompt, prompt_text

RUN_FILE, REPLIES_FILE = "run.json", "replies.jsonl"


@dataclass(frozen=True)
class Run:
    """One decoding configuration: a method, and w for the ARGS modes (None where w does not apply)."""

    method: str
    w: float | None

    @property
    def label(self) -> str:
        return self.method if self.w is None else f"{self.method} w={self.w:g}"


def plan_runs(methods: list[str], w: float, sweep_w: list[float]) -> tuple[list[Run], list[Run]]:
    """(the main runs, one per method at --w; the extra ARGS runs of the w sweep)."""
    main = [Run(m, w if m in ARGS_MODES else None) for m in methods]
    sweep = [Run(m, x) for m in methods if m in ARGS_MODES for x in sweep_w if Run(m, x) not in main]
    return main, list(dict.fromkeys(sweep))


def reply_key(prompt_index: int, run: Run) -> str:
    return f"{prompt_index}|{run.method}|{'' if run.w is None else f'{run.w:g}'}"


class ReplyStore:
    """Finished replies by key; persisted as JSONL in out_dir when there is one."""

    def __init__(self, out_dir: str | Path | None, settings: dict):
        self.records: dict[str, dict] = {}
        self.path = None
        if out_dir is None:
            return
        out_dir = Path(out_dir).expanduser()
        if out_dir.exists() and not out_dir.is_dir():
            raise UserError(f"--out {out_dir} is a file; give a directory for the run's files")
        run_file, self.path = out_dir / RUN_FILE, out_dir / REPLIES_FILE
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            old = json.loads(run_file.read_text()) if run_file.is_file() else None
            if old is not None and not isinstance(old, dict):
                raise json.JSONDecodeError("not a JSON object", "", 0)
            started = self.path.is_file()  # written right after run.json: together they mark an eval run
            text = self.path.read_text(encoding="utf-8", errors="replace") if started else ""
            for line in text.splitlines():
                try:  # an interrupted write can leave a torn last line: that reply is simply redone
                    record = json.loads(line)
                    self.records[record["key"]] = record
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
            if old is None and (started or (out_dir / "results.json").exists()):
                raise UserError(f"{out_dir} holds another program's files ({REPLIES_FILE} or results.json without "
                                f"{RUN_FILE}), which eval would overwrite; use another --out directory")
            if old is not None and (self.records or not started):
                check_same_settings(old, settings, out_dir)
            if old != settings:  # a new run, or one that ended before its first reply (a typo in --reward, say)
                run_file.write_text(json.dumps(settings, indent=2) + "\n")
            self.path.touch()
            if text and not text.endswith("\n"):  # end a torn last line so the next reply starts afresh
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write("\n")
        except OSError as e:
            raise UserError(f"output directory {out_dir} is not writable: {e.strerror or e}") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise UserError(f"{run_file} is damaged (not a JSON object); use another --out directory") from None

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def add(self, record: dict) -> None:
        self.records[record["key"]] = record
        if self.path is not None:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def model_paths(policy: str | Path, reward: str | Path) -> dict:
    """The policy and reward model as a run records them: their own paths, so a built-in name and its folder
    are one model, and ./rm typed in another folder is another."""
    return {"policy": str(Path(policy).expanduser().resolve()),
            "reward": COMBINE.join(str(d.resolve()) for d in reward_model_dirs(reward))}


def check_same_settings(old: dict, new: dict, out_dir: Path) -> None:
    if isinstance(old.get("policy"), str) and isinstance(old.get("reward"), str):
        # older versions recorded the models as typed (--reward guide); a relative one is taken from this folder,
        # where a rerun of the same command runs
        old = {**old, **model_paths(old["policy"], old["reward"])}
    changed = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if changed:
        raise UserError(f"{out_dir} holds an eval run with other settings ({'; '.join(changed)}). "
                        "Rerun with the same settings to continue it, or pick another --out directory.")


def prompt_digest(prompt: EvalPrompt) -> str:
    """A short fingerprint of the prompt's messages, saved with each reply: a resumed run finds replies
    stored under an index that a since-edited prompt file gives to another prompt."""
    return hashlib.sha256(json.dumps(prompt.messages, sort_keys=True).encode()).hexdigest()[:16]


def check_same_prompts(store: ReplyStore, prompts: list[EvalPrompt], out_dir) -> None:
    """Refuse a resumed run whose saved replies answer other prompts than the file now gives at their index
    (replies saved before the fingerprint existed are checked by their line)."""
    by_index = {p.index: p for p in prompts}
    for record in store.records.values():
        prompt = by_index.get(record.get("prompt_index"))
        if prompt is not None and (record["prompt_digest"] != prompt_digest(prompt) if "prompt_digest" in record
                                   else record.get("line") != prompt.line):
            raise UserError(f"the prompt file changed since {out_dir} was written: its reply to prompt {prompt.index + 1} "
                            f"(line {record.get('line')}) answers another prompt than line {prompt.line} now holds. "
                            "Restore the file to continue that run, or pick another --out directory.")


class ProgressBar:
    """One line on stderr: done/total, elapsed, ETA from the replies generated in this session."""

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.stream = total, 0, stream or sys.stderr
        self.start = time.perf_counter()
        self.tty = hasattr(stream, "isatty") and stream.isatty()

    def step(self, label: str = "") -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.start
        eta = elapsed / self.done * (self.total - self.done)
        filled = int(20 * self.done / max(1, self.total))
        line = (f"eval [{'#' * filled}{'-' * (20 - filled)}] {self.done}/{self.total} replies  "
                f"{clock(elapsed)} elapsed  ETA {clock(eta)}  {label}")
        self.stream.write(("\r" + line.ljust(100)) if self.tty else line + "\n")
        if self.tty and self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def harmless_objective(objectives: tuple[str, ...]) -> str:
    """The judge objective `judge_reward` and judge_win_tie_vs_greedy report: the harmlessness head
    (a single-head judge, e.g. the old built-in one, was trained on harmlessness)."""
    return "harmless" if "harmless" in objectives else objectives[0]


class Scorers:
    """The judge RM and the sentence embedder, each optional (None, with why, when absent); the guide,
    to re-score saved replies whose guide rewards predate its objectives (e.g. a head added since)."""

    def __init__(self, judge=None, embedder=None, guide=None, guide_weights: dict | None = None,
                 judge_id: str | None = None, embedder_id: str | None = None):
        self.judge, self.embedder, self.guide, self.guide_weights = judge, embedder, guide, guide_weights
        self.judge_id, self.embedder_id = judge_id, embedder_id  # which model scored a record (its folder)

    def fill(self, record: dict, prompt: EvalPrompt) -> dict:
        """Add the judge rewards (one per judge objective) and coherence where missing and computable,
        or made by another judge or embedder than this run's (a resumed --out with another --judge)."""
        conversation = [m for m in prompt.messages if m["role"] != "system"]
        if self.guide is not None and set(record.get("guide_rewards") or {}) != set(self.guide.objectives):
            scores = self.guide.score_objectives(conversation, [record["text"] or " "])
            record["guide_rewards"] = {name: float(v[0]) for name, v in scores.items()}
            weights = self.guide.prompt_weights(conversation, self.guide_weights)  # gated, as decoding weighs them
            record["guide_reward"] = float(self.guide.combine(scores, weights)[0])
        if self.judge is not None and (record.get("judge_rewards") is None
                                       or set(record["judge_rewards"]) != set(self.judge.objectives)
                                       or record.get("judge_model", self.judge_id) != self.judge_id):
            scores = self.judge.score_objectives(conversation, [record["text"] or " "])
            record["judge_rewards"] = {name: float(v[0]) for name, v in scores.items()}
            record["judge_reward"] = record["judge_rewards"][harmless_objective(self.judge.objectives)]
            record["judge_model"] = self.judge_id
        if self.embedder is not None and (record.get("coherence") is None
                                          or record.get("embedder_model", self.embedder_id) != self.embedder_id):
            vectors = self.embedder.embed([prompt_text(prompt.messages), record["text"]])
            record["coherence"] = float(cosine_rows(vectors[:1], vectors[1:])[0])
            record["embedder_model"] = self.embedder_id
        return record


def generate_all(engine: Engine, prompts: list[EvalPrompt], runs: list[Run], base: DecodingSettings,
                 store: ReplyStore, scorers: Scorers, progress: ProgressBar | None = None) -> None:
    """Generate every missing reply, prompt by prompt (so an interruption leaves whole prompts done)."""
    for prompt in prompts:
        for run in runs:
            key = reply_key(prompt.index, run)
            if key in store:
                continue
            settings = base.with_(mode=run.method, w=base.w if run.w is None else run.w, seed=base.seed + prompt.index)
            res = engine.generate(prompt.messages, settings)
            # an empty reply is not scored by the engine (reward None): scorers.fill scores it as " ", like best-of-n
            record = {"key": key, "prompt_index": prompt.index, "line": prompt.line,
                      "prompt_digest": prompt_digest(prompt), "method": run.method,
                      "w": run.w, "text": res.text, "n_tokens": len(res.tokens), "stop_reason": res.stop_reason,
                      "guide_reward": res.reward, "guide_rewards": res.objective_rewards, "seconds": res.seconds,
                      "tokens_per_s": res.tokens_per_s,
                      "reward_calls": res.reward_calls, "ms_policy_per_step": res.ms_policy_per_step,
                      "ms_reward_per_step": res.ms_reward_per_step}
            store.add(scorers.fill(record, prompt))
            if progress is not None:
                progress.step(run.label)
