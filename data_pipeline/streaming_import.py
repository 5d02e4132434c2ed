"""Import mosaicml-streaming without its bundled example datasets.

`streaming/__init__.py` imports `streaming.text`, `streaming.vision` and `streaming.multimodal`
(ready-made C4, ImageNet, LAION ... datasets); `streaming.text` imports `transformers`, which costs
seconds and hundreds of MB in every process that reads data (each torchrun worker, each DataLoader
worker started by spawn). We use none of them, so they are registered as stand-ins that import the
real module on first use: `from streaming.text import StreamingC4` still works.
"""
from __future__ import annotations

import importlib
import sys
import types

EXAMPLE_PACKAGES = ("streaming.text", "streaming.vision", "streaming.multimodal")


class _OnFirstUse(types.ModuleType):
    def _load(self) -> types.ModuleType:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        real = importlib.import_module(self.__name__)
        parent = sys.modules.get(self.__name__.rpartition(".")[0])
        if parent is not None:
            setattr(parent, self.__name__.rpartition(".")[2], real)
        return real

    def __getattr__(self, attr: str):
        if attr.startswith("__") and attr != "__path__":
            raise AttributeError(attr)
        return getattr(self._load(), attr)


def defer_streaming_examples() -> None:
    """Call before the first `import streaming` (a no-op once streaming is imported)."""
    if "streaming" in sys.modules:
        return
    for name in EXAMPLE_PACKAGES:
        sys.modules.setdefault(name, _OnFirstUse(name))
