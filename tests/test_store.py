"""The memory store's rows: what a compiled kernel reads and writes in place must be sound."""

from __future__ import annotations

import numpy as np
import pytest

from kabuguard.engine import MemoryStore


def test_a_new_key_asked_twice_in_one_call_gets_one_row() -> None:
    store = MemoryStore()
    table, at = store.rows("s", ["a", "a", "b"], np.zeros(3))
    assert at[0] == at[1] != at[2]
    table[at[0], 0] = 7.0
    again, at = store.rows("s", ["a"], np.zeros(3))
    assert again[at[0], 0] == 7.0


def test_rows_keep_their_values_as_the_table_grows() -> None:
    store = MemoryStore()
    fresh = np.array([1.0, 2.0])
    keys = [f"k{i}" for i in range(1000)]
    for key in keys:  # one at a time, as the service-like path asks
        table, at = store.rows("s", [key], fresh)
        table[at[0], 1] = float(key[1:])
    table, at = store.rows("s", keys, fresh)
    assert table[at, 0].tolist() == [1.0] * 1000 and table[at, 1].tolist() == list(map(float, range(1000)))


def test_rows_of_another_width_are_refused_naming_the_stage() -> None:
    store = MemoryStore()
    store.rows("symbol_tapes", ["a"], np.zeros(66))
    with pytest.raises(ValueError, match="symbol_tapes"):
        store.rows("symbol_tapes", ["b"], np.zeros(18 + 288))
