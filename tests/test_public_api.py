"""The public namespace is exactly what __all__ says."""

from __future__ import annotations

import types

import retrysafe


def test_all_matches_public_names() -> None:
    """Every public attribute is in __all__ and every name in __all__ exists, documented."""
    for name in retrysafe.__all__:
        getattr(retrysafe, name)  # loaded at first access
    public = {
        name
        for name, value in vars(retrysafe).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name not in ("annotations", "TYPE_CHECKING")  # __future__; the typing guard
    }
    assert set(retrysafe.__all__) <= set(dir(retrysafe))
    assert sorted(public) == sorted(retrysafe.__all__)
    for name in retrysafe.__all__:
        assert getattr(retrysafe, name).__doc__, f"{name} has no docstring"


def test_import_retrysafe_loads_only_what_is_used() -> None:
    """``import retrysafe`` loads no submodule and not typing; a name loads its module at
    first access, and an unknown name is an AttributeError."""
    import subprocess
    import sys

    code = (
        "import sys, retrysafe\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('retrysafe.'))\n"
        "print(loaded, 'typing' in sys.modules)\n"
        "retrysafe.RetryConfig\n"
        "print('retrysafe._retry' in sys.modules, 'retrysafe._cache' in sys.modules)\n"
        "try:\n    retrysafe.nothing_here\nexcept AttributeError as e:\n    print(e)\n"
        "print(retrysafe.stores.RedisStore.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert "[] False" == lines[0]
    assert "True False" == lines[1]
    assert "has no attribute 'nothing_here'" in lines[2]
    assert "RedisStore" == lines[3]  # a subpackage, as an attribute


def test_the_core_does_not_load_asyncio_or_logging() -> None:
    """The core's names (a program's usual import) load neither asyncio nor logging: asyncio
    alone is ~38 ms on 3.12 (ssl, subprocess, concurrent.futures). A regression of this
    session's lease timer, which imported it to find a running loop."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from retrysafe import tool, session, idempotent, cache_tool, LoopGuard, RetryConfig\n"
        "print(sorted(m for m in ('asyncio', 'logging', 'ssl') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "[]" == done.stdout.strip(), done.stdout
