"""The k-anonymity rule and fold (pure): a number is published only from k shops (per
family: orders, views, cancels and returns); cells below it are folded or withheld."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.core.kanon import (
    FOLDED,
    ORDER,
    RETURN,
    VIEW,
    Row,
    counts,
    fold,
    publishable,
    shop_tag,
)

S = [shop_tag(h << 2, ORDER) for h in range(1, 9)]  # shops s1..s8 that sold
V = [shop_tag(h << 2, VIEW) for h in range(1, 9)]  # the same shops, viewed
R = [shop_tag(h << 2, RETURN) for h in range(1, 9)]  # the same shops, with returns


def test_publishable_needs_k_of_each_kind_that_is_there() -> None:
    assert counts({S[0], V[0], S[0], R[1]}) == (1, 1, 1)
    assert publishable(S[:3], 3) and publishable(V[:3], 3)
    assert publishable(S[:3] + V[:4], 3)
    assert not publishable(S[:2], 3)
    assert not publishable(S[:1] + V[:5], 3)  # one shop's sales, whatever its views
    assert not publishable(S[:5] + V[:1], 3)  # one shop's views
    assert not publishable(S[:3] + R[:1], 3)  # one shop's returns
    assert publishable(S[:3] + R[3:6] + V[:3], 3)
    assert not publishable([], 3)
    assert publishable(S[:1], 1)


def _cell(key: tuple[str, ...], units: int, tags: list[int]) -> Row:
    return Row(key, (units,), frozenset(tags))


def test_fold_levels() -> None:
    rows = [
        _cell(("袜子", "红", "M", "10-20", "浙江"), 5, S[:3]),  # published as it is
        _cell(("袜子", "红", "M", "10-20", "广东"), 1, S[3:4]),  # 1 shop: folded over regions
        _cell(("袜子", "红", "M", "10-20", "江苏"), 2, S[4:6]),  # with it: 3 shops
        _cell(("袜子", "蓝", "L", "10-20", "浙江"), 7, S[6:7]),  # alone in its colour: to the
        _cell(("袜子", "黑", "S", "0-10", "浙江"), 3, S[0:1]),   # category, with these two
        _cell(("袜子", "白", "S", "0-10", "浙江"), 4, S[1:2]),
        _cell(("杯子", "白", "均码", "20-50", "浙江"), 9, S[7:8]),  # alone in its category:
        _cell(("毛巾", "白", "均码", "20-50", "浙江"), 8, S[2:3]),  # to the market, with
        _cell(("鞋", "黑", "40", "50-100", "浙江"), 6, S[0:1]),       # these two
    ]
    got = {(r.key, r.level): r.measures[0] for r in fold(rows, 3)}
    assert got == {
        (("袜子", "红", "M", "10-20", "浙江"), 0): 5,
        (("袜子", "红", "M", "10-20", FOLDED), 1): 3,
        (("袜子", FOLDED, FOLDED, FOLDED, FOLDED), 2): 14,
        ((FOLDED,) * 5, 3): 23,
    }
    # one shop over everything: nothing at all
    assert fold([_cell(("a", "b", "c", "d", "e"), 1, S[:1] + V[:1])], 3) == []
    # a remainder below k is withheld, the rest still published
    two = fold([_cell(("a", "b", "c", "d", "e"), 1, S[:3]), _cell(("x",) * 5, 1, S[3:5])], 3)
    assert [r.key for r in two] == [("a", "b", "c", "d", "e")]


cells = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]), st.sampled_from(["r", "g", "b"]), st.sampled_from(["S", "M"]),
        st.sampled_from(["0-10", "10-20"]), st.sampled_from(["x", "y", "z"]),
        st.integers(0, 50),
        st.frozensets(st.sampled_from(S[:5] + V[:5] + R[:3]), min_size=1, max_size=4),
    ),
    max_size=40,
).map(lambda cs: list({c[:5]: c for c in cs}.values()))


@given(cells, st.integers(1, 4))
@settings(max_examples=300)
def test_every_published_row_has_k_shops_and_rows_are_disjoint(
    cs: list[tuple[object, ...]], k: int
) -> None:
    rows = [Row(tuple(map(str, c[:5])), (int(c[5]),), c[6]) for c in cs]  # type: ignore[arg-type]
    out = fold(rows, k)
    for r in out:
        assert publishable(r.shops, k)
    # each cell lands in at most one published row, and the published units are exactly
    # those of the cells they cover
    assert sum(r.measures[0] for r in out) <= sum(r.measures[0] for r in rows)
    published_cells = [r for r in rows if publishable(r.shops, k)]
    assert all((r.key, 0) in {(o.key, o.level) for o in out} for r in published_cells)


def test_a_single_shop_cell_never_appears_unfolded() -> None:
    rng = random.Random(3)
    rows = [_cell(tuple(rng.choice("abc") for _ in range(5)), rng.randint(1, 9),
                  rng.sample(S[:6] + V[:6], rng.randint(1, 5))) for _ in range(200)]
    for r in fold(rows, 3):
        assert all(n == 0 or n >= 3 for n in counts(r.shops))
