"""Find the shortcuts in a dataset before a detector learns them (``aigi audit``).

``audit(samples) -> AuditResult``: per-file attributes read cheaply from the file
(:mod:`.attributes`), how well each one (and all together) separates real from fake per
subset, and a verdict (:mod:`.separability`); :mod:`.report` writes Markdown + HTML,
:mod:`.neutralize` writes a copy with the shortcuts removed. Importing this package is
cheap: scikit-learn, scipy and matplotlib load when they are used.
"""

from .core import ALL, MODEL, AuditResult, audit
from .separability import Separation, Thresholds

__all__ = ["ALL", "MODEL", "AuditResult", "Separation", "Thresholds", "audit"]
