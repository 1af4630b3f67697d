"""The public namespace is exactly what __all__ says."""

from __future__ import annotations

import types

import retrysafe


def test_all_matches_public_names() -> None:
    """Every public attribute is in __all__ and every name in __all__ exists, documented."""
    public = {
        name
        for name, value in vars(retrysafe).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__
    }
    assert sorted(public) == sorted(retrysafe.__all__)
    for name in retrysafe.__all__:
        assert getattr(retrysafe, name).__doc__, f"{name} has no docstring"
