"""args-local export reward SRC --out DIR — Hugging Face reward model (or GGUF backbone + head) → ONNX."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from ..errors import UserError
from ..home import is_built_in_folder, reward_model_dir
from ..reward.heads import check_weights, head_specs
from ..reward.manifest import MANIFEST, read_manifest
from ..settings import parse_objectives


def register(sub) -> None:
    p = sub.add_parser("export", help="convert models for args-local (needs the `export` extra)",
                       description="Convert models into the directories args-local runs.")
    what = p.add_subparsers(dest="what", required=True)
    r = what.add_parser("reward", help="export a reward model to validated ONNX",
                        description="Export a Hugging Face reward model directory (or a GGUF backbone plus a "
                                    "trained head) to ONNX, validate it against torch, and write a manifest; or "
                                    "export a model args-local wrote again (to another precision), keeping its "
                                    "heads, gates and warm-ups.")
    r.add_argument("src", nargs="?", help="local Hugging Face model directory (config.json, weights, tokenizer.json), "
                                          "or a model args-local exported (guide, encoder: the built-in ones) to "
                                          "export again, e.g. with --quantize int8")
    r.add_argument("--out", required=True, help="output directory (`args-local models` lists those in its models folder)")
    r.add_argument("--kind", default="auto", choices=("auto", "encoder", "decoder"),
                   help="encoder (reads text with its own tokenizer: any classifier) or decoder (KV-cached, shares the "
                        "policy's vocabulary: Llama, Mistral, Qwen2); auto: decoder for those three")
    r.add_argument("--from-gguf", metavar="POLICY.gguf", help="use a GGUF chat model's backbone as a decoder RM "
                   "(with an earlier export as SRC: the GGUF it was made from; default: the built-in policy)")
    r.add_argument("--head", metavar="[NAME=]HEAD.npz", action="append",
                   help="with --from-gguf: the trained head (w_last, w_mean, bias, n_layers); repeat as "
                        "--head helpful=A.npz --head harmless=B.npz for one head per objective on the same pass")
    r.add_argument("--objective", metavar="NAME=W[,NAME=W]",
                   help="with named heads: the default weights of the objectives (default: 1 each)")
    r.add_argument("--layers", type=int, help="with --from-gguf: cut the backbone after this many layers")
    r.add_argument("--label-index", type=int, help="which output label is the reward, for multi-label models")
    r.add_argument("--max-length", type=int, default=None, help="tokens the RM reads (default 512, or the model's positions where fewer; 384 for --from-gguf)")
    r.add_argument("--format", default=None,
                   help="input format: template (the model's own chat template, from its tokenizer files), chatml, "
                        "plain or pair-last-user (default: template where the model has one, else chatml for "
                        "decoders and pair-last-user for encoders)")
    r.add_argument("--opset", type=int, help="ONNX opset of the written graph (default 18, at least 14)")
    r.add_argument("--fp16", action="store_true",
                   help="half-precision weights (mainly for GPUs); refused if it reorders candidates")
    r.add_argument("--quantize", choices=("int8",),
                   help="int8 (encoder: dynamic; decoder: smoothed, then the faster here of dynamic and "
                        "weight-only); refused if it reorders candidates")
    r.add_argument("--force", action="store_true", help="replace OUT if it exists")
    r.add_argument("--json", action="store_true", help="print the written manifest as JSON")
    r.set_defaults(run=run)


def _require_export_extra() -> None:
    try:
        import optimum.exporters.onnx  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise UserError(f"exporting needs the export extra ({e.name} is missing): "
                        "pip install 'args-local[export]' (tools/setup.sh installs it)") from None


def parse_heads(values: list[str]) -> tuple[str | None, dict[str, dict] | None]:
    """--head FILE (one head) or --head NAME=FILE, repeated (one per objective)."""
    named = [v.partition("=") for v in values if "=" in v]
    if not named:
        if len(values) > 1:
            raise UserError("several --head files need objective names: --head helpful=A.npz --head harmless=B.npz")
        return (values[0] if values else None), None
    if len(named) < len(values):
        raise UserError("give every --head an objective name (NAME=HEAD.npz), or give one --head without a name")
    objectives = {}
    for name, _, path in named:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", name) or name in objectives:
            raise UserError(f"objective names in --head must be distinct words (letters, digits, - or _); got {name!r}")
        objectives[name] = {"file": path}
    return None, objectives


def earlier_export(src: str | None) -> tuple[Path, dict] | None:
    """SRC and its manifest where SRC is a model args-local exported (a manifest.json, no config.json) or a
    built-in reward model's name (guide, encoder: as --reward takes them), else None."""
    from ..export.common import is_earlier_export

    path = reward_model_dir(src) if src else None
    if path is None or (path / "config.json").is_file() or not is_earlier_export(path):  # a web app's manifest.json
        return None
    return path, read_manifest(path)


def default_weights(text: str | None, objectives: dict | None) -> dict[str, float] | None:
    """--objective, checked against the named heads before anything loads: a misspelt objective was refused
    after the whole export, and as the manifest's default_objectives, which the user never wrote."""
    if text is None:
        return None
    if not objectives:
        raise UserError("--objective needs named heads: --head NAME=HEAD.npz (repeatable)")
    weights = dict(parse_objectives(text))
    if unknown := [name for name in weights if name not in objectives]:
        raise UserError(f"--objective {unknown[0]}: no --head has that name; the heads: {', '.join(objectives)}")
    return check_weights(weights, tuple(objectives), "--objective")  # each weight a finite number >= 0


def check_heads_leave_nothing_behind(files: list[str]) -> None:
    """A --head file of an earlier export whose manifest gives it a warm-up, delay or gate, which a head file
    cannot carry: exported alone, the new model lost them, silently (the guide's gate and warm-ups)."""
    for path in files:
        folder, name = Path(path).expanduser().parent, Path(path).name
        try:
            manifest = read_manifest(folder) if (folder / MANIFEST).is_file() else {}
            specs = head_specs(manifest)
        except UserError:  # not a model of ours, or a damaged one: the head file is all there is
            continue
        for objective, spec in specs.items():
            if spec["file"] == name and (spec.get("warmup_tokens") or spec.get("delay_tokens")
                                         or objective in (manifest.get("gates") or {})):
                raise UserError(f"{path} is a head of the export {folder}, whose warm-up, delay or gate for it only "
                                f"its manifest holds: export that folder itself to keep them (args-local export "
                                f"reward {shlex.quote(str(folder))} --out OUT), or copy the head file out of it to "
                                "leave them behind")


def check_options_fit_the_source(args, earlier: bool) -> None:
    """Options that the other kind of source ignores are refused: an export that silently left out the
    user's --head, or kept all layers despite --layers, validated and looked right."""
    if earlier:
        unused = {"--head": args.head, "--objective": args.objective, "--layers": args.layers is not None,
                  "--kind": args.kind != "auto", "--label-index": args.label_index is not None,
                  "--format": args.format, "--max-length": args.max_length is not None}
        where = ("when SRC is an earlier export: it is exported again with the heads, weights, gates, layers, "
                 "format and length it has")
    elif args.from_gguf:
        unused = {"SRC": args.src, "--kind": args.kind != "auto", "--label-index": args.label_index is not None,
                  "--format": args.format}
        where = ("with --from-gguf, which exports the GGUF's backbone with --head files (its input format is "
                 "the policy's own)")
    else:
        unused = {"--head": args.head, "--objective": args.objective, "--layers": args.layers is not None}
        where = "without --from-gguf: a Hugging Face SRC is exported whole, with its own classification head"
    if misplaced := [name for name, given in unused.items() if given]:
        raise UserError(f"{', '.join(misplaced)} cannot be used {where}")


def run(args) -> int:
    from ..export.common import check_output, quiet_converters, stderr_progress

    # Everything a user can get wrong is checked before the slow imports of the export extra.
    earlier = earlier_export(args.src)
    check_options_fit_the_source(args, earlier is not None)
    src = earlier[0] if earlier else args.src
    head, objectives = parse_heads(args.head or [])
    defaults = default_weights(args.objective, objectives)
    head_files = [spec["file"] for spec in objectives.values()] if objectives else [head]
    out = check_output(args.out, args.force, (src, args.from_gguf, *head_files))
    if is_built_in_folder(out):
        raise UserError(f"{out} is a built-in model's folder, which tools/setup.sh rebuilds over yours: choose "
                        "another --out (in the same models folder, `args-local models` lists it)")
    if args.fp16 and args.quantize:
        raise UserError("choose one of --fp16 and --quantize int8")
    precision = "fp16" if args.fp16 else args.quantize
    for option, value, least in (("--layers", args.layers, 1), ("--max-length", args.max_length, 16),
                                 ("--label-index", args.label_index, 0), ("--opset", args.opset, 14)):
        if value is not None and value < least:
            raise UserError(f"{option} must be at least {least} (got {value})")
    config = None
    if earlier is not None:
        from ..export.reexport import source_gguf

        gguf = source_gguf(*earlier, args.from_gguf, precision)
        if gguf is None and args.opset is not None:  # it would be ignored
            raise UserError(f"--opset cannot be used with {src}: its own graph is converted, at the opset it has")
    elif args.from_gguf:
        from ..policy import check_gguf_file

        check_gguf_file(args.from_gguf, "policy model")
        for path in filter(None, head_files):
            if not Path(path).is_file():
                raise UserError(f"head file not found: {path}")
        check_heads_leave_nothing_behind(list(filter(None, head_files)))
    else:
        if not args.src:
            raise UserError("give SRC (a Hugging Face model directory) or --from-gguf POLICY.gguf --head HEAD.npz")
        from ..export.encoder import read_config

        src = Path(args.src).expanduser()
        if not src.exists() and "/" in args.src and not args.src.startswith((".", "/", "~")):
            raise UserError(f"{args.src} looks like a hub model id; args-local works offline and cannot download "
                            "it. Download the model directory elsewhere and pass its local path.")
        if src.is_file() and src.suffix.lower() == ".gguf":
            raise UserError(f"{args.src} is a GGUF file, and SRC a Hugging Face model directory; a GGUF chat model's "
                            f"backbone is exported with --from-gguf {args.src} --head HEAD.npz")
        config = read_config(src)
    quiet_converters()  # before the converters are imported
    _require_export_extra()
    from ..export.input_format import input_format_for

    progress = stderr_progress()
    if earlier is not None:
        from ..export.reexport import reexport

        manifest = reexport(*earlier, gguf, out, precision=precision, opset=args.opset or 18, force=args.force,
                            progress=progress)
    elif args.from_gguf:
        from ..export.from_gguf import export_from_gguf

        manifest = export_from_gguf(args.from_gguf, head, out, n_layers=args.layers,
                                    max_length=args.max_length or 384, opset=args.opset or 18, force=args.force,
                                    progress=progress, precision=precision, objectives=objectives,
                                    default_objectives=defaults)
    else:
        from ..export.encoder import detect_kind, export_encoder

        kind = detect_kind(config) if args.kind == "auto" else args.kind
        if kind == "encoder":
            manifest = export_encoder(src, out, input_format=input_format_for(src, args.format, "pair-last-user"),
                                      max_length=args.max_length, opset=args.opset or 18,
                                      label_index=args.label_index, precision=precision, force=args.force,
                                      progress=progress)
        else:
            from ..export.decoder import export_hf_decoder

            manifest = export_hf_decoder(src, out, input_format=input_format_for(src, args.format, "chatml"),
                                         max_length=args.max_length, opset=args.opset or 18,
                                         label_index=args.label_index, force=args.force, progress=progress,
                                         precision=precision)
    print(json.dumps(manifest, indent=2) if args.json else summary(out, manifest))
    return 0


def summary(out: Path, manifest: dict) -> str:
    """What was written, what its validation measured, and how to use it, in words."""
    from .models import described, objective_lines

    v = manifest["validation"]
    graph = manifest.get("graph")
    lines = [f"wrote {out}: {manifest['kind']} reward model"
             + (f", {graph['n_layers']} of {graph['total_layers']} layers" if graph else ""),
             f"validated: onnxruntime's rewards match torch's"
             + (", the source model's own forward included," if "max_abs_diff_source_model" in v else "")
             + f" within {max(d for k, d in v.items() if k.startswith('max_')):.1e} (tolerance {v['tolerance']:g})"
             " on the sample replies"]
    for precision in ("int8", "fp16"):
        if p := v.get(precision):
            way = f" ({p['way']})" if "way" in p else ""
            lines.append(f"{precision}{way}: keeps the order "
                         f"of {p['ranking_agreement']:.1%} of reward pairs fp32 gives (at least {p['bound']:.0%}), "
                         f"{p['ms_per_step']} ms per step")
    lines += objective_lines(described(manifest, out))  # an export again: what it kept
    if "vocab" in manifest:
        lines.append(f"it reads the policy's own token ids: use it with a policy of its tokenizer "
                     f"({manifest['vocab']['size']} tokens)")
    where = shlex.quote(str(out))
    lines.append(f"use it: args-local generate --reward {where} \"PROMPT\"; "
                 f"args-local score --reward {where} --pairs PAIRS.jsonl measures it")
    return "\n".join(lines)
