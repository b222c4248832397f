"""Unicode TR39 skeletons for lookalike detection: `аррӏе` and `app1e` both read as `apple`.

A skeleton maps every character to the ASCII prototype it can be mistaken for, so two strings
that a reader cannot tell apart get the same skeleton. The table is bundled data
(`kabuguard/data/phish/confusables.tsv`), reduced from Unicode's confusables.txt to prototypes made of ASCII
letters and digits, the only ones a lookalike of an ASCII brand domain can use.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from importlib.resources import files


@lru_cache(maxsize=1)
def _table() -> dict[int, str]:
    text = files("kabuguard").joinpath("data/phish/confusables.tsv").read_text("utf-8")
    table: dict[int, str] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            code, prototype = line.split("\t")
            if int(code, 16) != ord("m"):  # folded the other way in skeleton()
                table[int(code, 16)] = prototype
    return table


def skeleton(text: str) -> str:
    """TR39 skeleton of a lower-case label: NFD, map confusables, NFD again, `rn` as `m`.

    Combining marks are dropped as well, since a domain reader does not see `é` apart from `e`.
    """
    if text.isascii():  # the common case: only 0, 1 and | have lower-case ASCII prototypes
        # str.replace, several times faster here than str.translate with a table (the hot path)
        return text.replace("0", "o").replace("1", "l").replace("|", "l").replace("rn", "m")
    mapped = unicodedata.normalize("NFD", text).translate(_table())
    if not mapped.isascii():
        mapped = "".join(c for c in unicodedata.normalize("NFD", mapped) if not unicodedata.combining(c))
    # TR39 maps `m` to `rn`; folding the other way gives the same equality and keeps the
    # skeleton of an ordinary ASCII name readable (smbc stays smbc) for the reasons we print.
    return mapped.replace("rn", "m")
