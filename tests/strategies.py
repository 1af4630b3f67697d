"""Hypothesis strategies for tool-call arguments: plain JSON and the projected types."""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Any

from hypothesis import strategies as st

SAFE_INT = 2**53 - 1

# Keys and strings across the planes: ASCII, BMP (including U+E000..U+FFFF, where UTF-16
# order differs from code-point order) and astral characters. Hypothesis never draws lone
# surrogates from text() by default.
keys = st.text(
    alphabet=st.one_of(
        st.characters(max_codepoint=0x7F),
        st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, exclude_categories=["Cs"]),
        st.characters(min_codepoint=0x10000),
        st.characters(exclude_categories=["Cs"]),
    ),
    max_size=6,
)
texts = st.text(max_size=40)
floats = st.floats(allow_nan=False, allow_infinity=False)

plain_scalars = st.one_of(st.none(), st.booleans(), st.integers(-SAFE_INT, SAFE_INT), floats, texts)

plain_json: st.SearchStrategy[Any] = st.recursive(
    plain_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)


class Colour(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 10


@dataclasses.dataclass(frozen=True)
class Order:
    zeta: Any
    amount: int
    currency: str = "eur"


fixed_offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m))
)
datetimes = st.one_of(
    st.datetimes(),
    st.datetimes(timezones=st.one_of(st.just(datetime.timezone.utc), fixed_offsets)),
)
times = st.one_of(st.times(), st.times(timezones=fixed_offsets))
decimals = st.decimals(allow_nan=False, allow_infinity=False, places=None)

hashable_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), floats, texts, st.binary(max_size=8)
)

extended_scalars = st.one_of(
    plain_scalars,
    st.integers(),  # any size: beyond 2**53 the digits stay exact
    st.binary(max_size=20),
    datetimes,
    st.dates(),
    times,
    decimals,
    st.uuids(),
    st.sampled_from(list(Colour) + list(Level)),
    st.frozensets(hashable_scalars, max_size=5),
    st.sets(st.one_of(texts, st.integers()), max_size=5),
)

extended: st.SearchStrategy[Any] = st.recursive(
    extended_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
        st.dictionaries(st.integers(), inner, max_size=3),
        st.builds(Order, zeta=inner, amount=st.integers(), currency=texts),
    ),
    max_leaves=20,
)
