"""args-local eval --prompts FILE — compare decoding methods on the same prompts (resumable with --out)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from .. import home
from ..errors import UserError
from ..paths import write_text_atomically
from ..cpu import default_rm_threads
from ..settings import MODES, DecodingSettings
from .options import (add_model_options, add_tuning_options, check_fits_context, check_reward_files, load_engine,
                      objectives_from, tuning_from)

DEFAULT_METHODS = ("greedy", "top-k", "nucleus", "best-of-n", "args-greedy", "args-stochastic")


def register(sub) -> None:
    d = DecodingSettings()
    p = sub.add_parser("eval", help="compare decoding methods: reward, judge wins, diversity, coherence",
                       description="Generate replies to the same prompts with several decoding methods and compare "
                                   "them. With --out DIR the run is resumable: rerun the same command to continue.")
    p.add_argument("--prompts", required=True, metavar="FILE",
                   help="JSONL (.gz ok): HH-RLHF pairs (chosen/rejected), instruction-style lines or pairs "
                        "({\"instruction\"|\"prompt\": ...}; one prompt per instruction) or {\"messages\": [...]}")
    p.add_argument("--n", type=int, default=100, help="use the first N prompts (default 100)")
    p.add_argument("--split", choices=("all", "train", "dev"), default="all",
                   help="dev: only the records the built-in reward heads were not trained on (their 'split' field, "
                        "else instruction_index %% 5 == 4, else index %% 5 == 4); train: the others (choose settings "
                        "there, report on dev)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS), help=f"comma-separated, from: {', '.join(MODES)}")
    p.add_argument("--k", type=int, default=d.k, help=f"candidates per step for ARGS and top-k (default {d.k})")
    p.add_argument("--w", type=float, default=d.w, help=f"ARGS reward weight, >= 0 (default {d.w})")
    p.add_argument("--sweep-w", default="", metavar="W,W,...",
                   help="also run the ARGS methods at these w values and plot reward vs w (needs --out for the PNG)")
    p.add_argument("--temperature", type=float, default=d.temperature, help="for the sampling methods (default 1.0)")
    p.add_argument("--top-p", type=float, default=d.top_p, help=f"nucleus mass (default {d.top_p})")
    p.add_argument("--best-of", type=int, default=d.n, help=f"samples for best-of-n (default {d.n})")
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help=f"default {d.max_new_tokens}")
    p.add_argument("--seed", type=int, default=d.seed, help="prompt i uses seed + i (default 0)")
    add_tuning_options(p)
    p.add_argument("--out", metavar="DIR", help="write replies.jsonl (as they finish), results.json and the plot here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON instead of a Markdown table")
    p.add_argument("--on-bad-line", choices=("stop", "skip"), default="stop",
                   help="a malformed prompt line stops the run (default) or is skipped with a warning")
    p.add_argument("--judge", metavar="DIR|NAME", help="judge RM for win/tie/loss: a directory or a built-in name "
                   "(judge, guide, encoder; default: the built-in judge, if built)")
    p.add_argument("--embedder", metavar="DIR", help="sentence embedder for coherence (default: the built-in MiniLM)")
    add_model_options(p)
    p.set_defaults(run=run)


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in methods if m not in MODES]
    if unknown or not methods:
        raise UserError(f"unknown method {', '.join(map(repr, unknown)) or '(none given)'} in --methods; "
                        f"choose from: {', '.join(MODES)}")
    return list(dict.fromkeys(methods))


def nonnegative_floats(text: str, option: str) -> list[float]:
    try:
        values = list(dict.fromkeys(float(x) for x in text.split(",") if x.strip()))
    except ValueError:
        values = [math.nan]
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise UserError(f"{option} takes comma-separated numbers >= 0, e.g. 0,0.5,1,1.5,2 (got {text!r})")
    return values


def optional_model(explicit: str | None, default: Path, what: str, build_step: str, load):
    """(model, None), or (None, why) when the default model is not built; an explicit bad path is an error."""
    if explicit:
        return load(Path(explicit)), None
    if not (default / "manifest.json").is_file():
        return None, (f"{what}: not found in {default}; build it with "
                      f"`python tools/build_default_models.py --only {build_step}`")
    return load(default), None


def no_helpful_judge(judge, chosen: bool) -> str | None:
    """Why helpfulness is not judged; rebuilding is the remedy only for the built-in judge, not a --judge given."""
    if judge is None or "helpful" in judge.objectives:
        return None
    why = f"helpfulness judge: {judge.name} has no 'helpful' head (objectives: {', '.join(judge.objectives)})"
    return why if chosen else f"{why}; rebuild the built-in judge with `python tools/build_default_models.py --only judge`"


def run(args) -> int:
    from ..engine import ARGS_MODES
    from ..evaluation.embedder import SentenceEmbedder, read_embedder_manifest
    from ..evaluation.prompts import load_prompts
    from ..evaluation.report import markdown, plot_reward_vs_w, summarize
    from ..evaluation.runner import (ProgressBar, ReplyStore, Scorers, check_same_prompts, generate_all, model_paths,
                                     plan_runs, reply_key)
    from ..reward import load_reward_model, members

    methods = parse_methods(args.methods)
    sweep_w = nonnegative_floats(args.sweep_w, "--sweep-w")
    if sweep_w and not any(m in ARGS_MODES for m in methods):
        raise UserError(f"--sweep-w varies w of the ARGS methods ({', '.join(ARGS_MODES)}), and --methods has none")
    if sweep_w and not args.out:
        print("args-local: note: --sweep-w without --out prints the sweep table but writes no plot", file=sys.stderr)
    if args.n < 1:
        raise UserError(f"--n must be at least 1 (got {args.n})")
    objectives = objectives_from(args)
    if objectives and all(weight == 0 for _, weight in objectives):  # before DecodingSettings names its default mode
        raise UserError("all objective weights are 0: eval scores every method's replies by the weighted reward, "
                        "which would be 0 for all; give one objective a positive weight (objectives not named get 0)")
    base = DecodingSettings(k=args.k, w=args.w, temperature=args.temperature, top_p=args.top_p, n=args.best_of,
                            max_new_tokens=args.max_new_tokens, seed=args.seed, **tuning_from(args),
                            objectives=objectives).validated()
    check_fits_context(base, args)
    prompts = load_prompts(args.prompts, args.n, args.on_bad_line, split=args.split,
                           warn=lambda message: print(f"args-local: warning: {message}", file=sys.stderr))
    if len(prompts) < args.n:
        split = "" if args.split == "all" else f" in the {args.split} split"
        print(f"args-local: note: {args.prompts} has {len(prompts)} prompts{split}, fewer than --n {args.n}: "
              f"all {len(prompts)} are used", file=sys.stderr)
    settings = {"prompts_file": str(Path(args.prompts).expanduser().resolve()), "split": args.split,
                "methods": methods, "k": args.k,
                "w": args.w, "sweep_w": sweep_w, "temperature": args.temperature, "top_p": args.top_p,
                "best_of": args.best_of, "max_new_tokens": args.max_new_tokens, "seed": args.seed,
                **tuning_from(args), **({"objectives": dict(base.objectives)} if base.objectives else {}),
                **model_paths(args.policy or home.default_policy(), args.reward or home.default_reward())}
    store = ReplyStore(args.out, settings)  # before loading models: a bad --out fails fast
    check_same_prompts(store, prompts, args.out)

    if args.judge:
        check_reward_files(args.judge)
    if args.embedder:
        read_embedder_manifest(Path(args.embedder).expanduser())
    engine = load_engine(args, need_reward=True)  # the guide RM scores every method's replies
    threads = args.rm_threads or default_rm_threads()  # scorers run between replies, never beside llama.cpp
    judge, no_judge = optional_model(args.judge, home.default_judge(), "judge reward", "judge",
                                     lambda d: load_reward_model(d, threads))
    embedder, no_embedder = optional_model(args.embedder, home.default_sentence_embedder(), "coherence (sentence embedder)",
                                           "embedder", lambda d: SentenceEmbedder(d, threads))
    scorers = Scorers(judge, embedder, engine.reward, dict(base.objectives) or None,
                      judge_id=judge and "+".join(str(Path(m.directory).resolve()) for m in members(judge)),
                      embedder_id=embedder and str(Path(args.embedder or home.default_sentence_embedder()).expanduser().resolve()))

    main_runs, sweep_runs = plan_runs(methods, args.w, sweep_w)
    missing = sum(reply_key(p.index, r) not in store for p in prompts for r in main_runs + sweep_runs)
    if missing < len(prompts) * len(main_runs + sweep_runs):
        print(f"args-local: resuming {args.out}: {missing} replies left to generate", file=sys.stderr)
    generate_all(engine, prompts, main_runs + sweep_runs, base, store, scorers, ProgressBar(missing) if missing else None)
    by_index = {p.index: p for p in prompts}
    for record in list(store.records.values()):  # replies from before the judge, the embedder or a guide head existed
        if record["prompt_index"] in by_index:
            before = dict(record)  # fill replaces values, never changes one in place
            if scorers.fill(record, by_index[record["prompt_index"]]) != before:
                store.add(record)  # saved: the next rerun need not score it again

    indices = [p.index for p in prompts]
    greedy = next((r for r in main_runs if r.method == "greedy"), None)
    result = {
        "methods": [summarize(store.records, indices, r, greedy) for r in main_runs],
        "sweep": [summarize(store.records, indices, r, greedy) for r in sweep_runs],
        "prompts": len(prompts), "settings": settings,
        "models": {"policy": settings["policy"], "guide": engine.reward.name,
                   "judge": getattr(judge, "name", None), "judge_objectives": list(getattr(judge, "objectives", ())),
                   "embedder": None if embedder is None else str(args.embedder or home.default_sentence_embedder())},
        "unavailable": [why for why in (no_judge, no_embedder, no_helpful_judge(judge, bool(args.judge))) if why]
                       + ([] if greedy else ["judge win/tie/loss: include greedy in --methods to compare against it"]),
    }
    if args.out:
        write_outputs(Path(args.out).expanduser(), result, store, indices, plot_reward_vs_w)
    print(json.dumps(result, indent=2) if args.json else markdown(result))
    return 0


def write_outputs(out: Path, result: dict, store, indices: list[int], plot) -> None:
    wanted = set(indices)
    replies = sorted((r for r in store.records.values() if r["prompt_index"] in wanted),
                     key=lambda r: (r["prompt_index"], r["method"], r["w"] or 0.0))
    try:
        write_text_atomically(out / "results.json", json.dumps({**result, "replies": replies}, indent=2) + "\n")
        png = plot(result, out / "reward_vs_w.png")
    except OSError as e:
        raise UserError(f"could not write results to {out}: {e.strerror or e}") from None
    print(f"args-local: wrote {out / 'results.json'}" + (f" and {png}" if png else ""), file=sys.stderr)
