"""args-local score --reward DIR --pairs FILE — pairwise accuracy of a reward model."""

from __future__ import annotations

import json
import sys
import time

from .. import home
from ..conversations import read_preference_pairs
from ..errors import UserError
from ..reward import load_reward_model
from ..scoring import length_report, score_pairs
from .options import RM_THREADS_HELP, check_model_options, check_reward_files


def register(sub) -> None:
    p = sub.add_parser("score", help="pairwise accuracy of a reward model on preference pairs",
                       description="Score preference pairs (HH-RLHF dialogues, whose last Assistant turn is the "
                                   "reply, or instruction-style pairs) and report how often chosen scores above rejected.")
    p.add_argument("--reward", help="reward model: a directory, or a built-in name (guide, judge, encoder; default guide); "
                                     "several joined by + are weighed together (see --objective)")
    p.add_argument("--pairs", required=True, help="JSONL(.gz): HH-RLHF pairs (chosen/rejected dialogues) or instruction-style pairs (instruction, chosen, rejected)")
    p.add_argument("--split", choices=("all", "train", "dev"), default="all",
                   help="dev: the pairs the built-in heads were never trained on (a record's 'split' field, else instruction_index %% 5 == 4, else pair index %% 5 == 4)")
    p.add_argument("--objective", metavar="NAME",
                   help="score this objective's head alone (default: the model's default weights over its objectives, "
                        "each gated by the prompt as in decoding)")
    p.add_argument("--limit", type=int, help="score only the first N pairs (after --split; default: all)")
    p.add_argument("--threads", type=int, default=None,
                   help=RM_THREADS_HELP)
    p.add_argument("--json", action="store_true", help="print {accuracy, pairs, ...} as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    check_model_options(args)
    weights = {args.objective: 1.0} if args.objective else None
    check_reward_files(args.reward, weights or {})  # an objective the model lacks: before it loads
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be at least 1 (got {args.limit}); leave it out to score every pair")
    pairs = read_preference_pairs(args.pairs)
    if args.split != "all":
        pairs = [p for p in pairs if p.split == args.split]
    if not pairs:  # the file itself has pairs (read_preference_pairs refuses an empty one)
        raise UserError(f"{args.pairs} has no {args.split}-split pairs (see --split in --help); "
                        "score them all with --split all")
    pairs = pairs[: args.limit]
    rm = load_reward_model(args.reward or home.default_reward(), threads=args.threads)
    start = time.time()

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty() and not args.json:
            print(f"\r{done}/{total} pairs", end="", file=sys.stderr, flush=True)

    result, scores = score_pairs(rm, pairs, progress, weights)
    lengths = length_report(pairs, scores)
    out = {**result.to_dict(), **lengths, "reward_model": rm.name, "kind": rm.kind, "split": args.split,
           "objectives": result.weights,
           "seconds": round(time.time() - start, 1)}
    if args.json:
        print(json.dumps(out))
    else:
        if sys.stderr.isatty():
            print(file=sys.stderr)
        print(f"{rm.name} ({rm.kind}{', ' + args.objective if args.objective else ''}): pairwise accuracy "
              f"{result.accuracy:.3f} (95% CI {out['ci95_low']:.3f}-{out['ci95_high']:.3f}) "
              f"on {result.pairs} pairs ({result.correct} chosen above rejected, {result.ties} ties); "
              f"\"longer wins\" {lengths['longer_wins']:.3f}")
        matched = lengths["length_matched"]
        if matched["pairs"]:
            print(f"length-matched pairs (within {matched['within']}x): accuracy {matched['accuracy']:.3f} (95% CI "
                  f"{matched['ci95_low']:.3f}-{matched['ci95_high']:.3f}) on {matched['pairs']} pairs; "
                  f"\"longer wins\" {matched['longer_wins']:.3f}")
    return 0
