"""Pony Pipeline: booru posts → normalised scores → CLIP embeddings → aesthetic scores → captions → fine-tunes.

The library runs without Airflow: every stage is a plain function, also reachable from the ``pony`` CLI.
"""

__version__ = "0.1.0"
