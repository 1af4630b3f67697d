"""The ``retrysafe`` logger, reached lazily: ``import logging`` (with ``traceback``,
``string`` and ``threading``) cost a fifth of ``import retrysafe``, and most programs log
nothing through it until something goes wrong."""

from __future__ import annotations

from typing import Any

__all__ = ["WARNING", "logger"]

#: ``logging.WARNING``, without importing logging.
WARNING = 30


class _Logger:
    """Stands for ``logging.getLogger("retrysafe")``: every attribute is the real logger's,
    which is looked up once, at first use."""

    __slots__ = ("_real",)

    def __init__(self) -> None:
        self._real: Any = None

    def __getattr__(self, name: str) -> Any:
        real = self._real
        if real is None:
            import logging

            real = self._real = logging.getLogger("retrysafe")
        return getattr(real, name)

    def __repr__(self) -> str:
        return "<the 'retrysafe' logger>"


logger: Any = _Logger()
