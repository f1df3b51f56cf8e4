"""Import every method module in this package so each one registers itself."""

import importlib
import pkgutil
from pathlib import Path

_SKIP = {"base", "registry", "clip_base"}

for _info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
    if _info.name not in _SKIP and not _info.name.startswith("_"):
        importlib.import_module(f"{__package__}.{_info.name}")
