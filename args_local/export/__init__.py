"""Model conversion (needs the `export` extra: torch, transformers, optimum). The runtime never imports this."""
