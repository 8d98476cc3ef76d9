"""The `args-local chat` terminal app (Textual). Start with ChatApp(engine=...) or ChatApp(load_engine=...)."""

from .app import ChatApp

__all__ = ["ChatApp"]
