"""The benchmark: AIGIBench-style protocols run against a resumable results store, and their reports.

``protocol`` (the validated YAML file), ``run`` (planning and running it), ``store`` (SQLite
scores), ``report`` (tables, plots, Markdown/HTML), ``cli`` (``aigi bench``, ``aigi report``).
"""
