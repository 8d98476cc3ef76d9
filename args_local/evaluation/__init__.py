"""Evaluation: prompt files, metrics, the resumable eval loop, reports, and the sentence embedder."""
