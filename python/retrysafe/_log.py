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
    which is looked up at first use."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger("retrysafe"), name)

    def __repr__(self) -> str:
        return "<the 'retrysafe' logger>"


logger: Any = _Logger()
