"""The benchmark: AIGIBench-style protocols run against a resumable results store, and their reports.

``protocol`` (the validated YAML file), ``plan`` (condition names and the pairs a protocol
needs), ``run`` (training what is missing and scoring what is not stored), ``store``
(SQLite scores), ``results`` / ``tables`` / ``plots`` / ``render`` / ``report`` (the
report: numbers, cells, figures, Markdown + HTML, and the sections in order), ``cli``
(``aigi bench``, ``aigi report``). The report never imports the runner.
"""
