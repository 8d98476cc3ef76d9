"""F8: which models are loaded and where they run."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from ..reward.manifest import readable, validation_summary
from .dialogs import PANEL_CSS
from .status_bar import gated_objectives


def model_table(engine, judge, db_path, history_on: bool, load_error: str | None) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold", no_wrap=True)
    t.add_column(overflow="fold")

    def row(name: str, value: str, style: str = "") -> None:  # a Text: a path with [/old] in it is no markup
        t.add_row(name, Text(value, style))

    if engine is None:
        row("models", load_error or "loading…", "red" if load_error else "")
    else:
        p = engine.policy.info
        row("policy", p.path)
        row("size", f"{p.size_bytes / 2**20:.1f} MiB")
        row("context", f"{p.n_ctx} tokens (trained on {p.n_ctx_train})")
        row("vocabulary", str(p.n_vocab))
        row("GPU offload", f"yes, {p.n_gpu_layers} layers" if p.gpu_offload else "no (CPU)")
        row("threads", str(p.n_threads))
        rm = engine.reward
        if rm is None:
            row("reward model", "none loaded (ARGS modes unavailable)")
        else:
            row("reward model", f"{rm.name} ({rm.kind})")
            row("RM runs on", rm.provider)
            gated, by_gate = gated_objectives(rm), ", gated by the last user message"
            row("RM objectives", ", ".join(f"{n} (default weight {w:g}{by_gate if n in gated else ''})"
                                           for n, w in rm.default_objectives.items()))
            source = rm.manifest.get("source")
            if source:
                row("RM source", source if isinstance(source, str) else readable(source))
            validation = rm.manifest.get("validation")
            if validation:
                row("RM validation", validation_summary(validation))
    if judge is not None and judge.path is not None:
        state = ("off: " + judge.error if judge.error else "loaded" if judge.loaded
                 else "loads with the first reply" if judge.available else "not installed")
        row("judge RM", f"{judge.path} — {state}")
    row("history", f"{db_path} — {'on' if history_on else 'OFF'}")
    return t


class ModelInfoScreen(ModalScreen):
    DEFAULT_CSS = PANEL_CSS.format(name="ModelInfoScreen")
    BINDINGS = [Binding("escape,f8,q", "dismiss", "Close")]

    def __init__(self, table: Table):
        super().__init__()
        self.table = table

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text("Models (Esc closes)", style="bold"))
            yield Static(self.table)
