"""Brand registries are data: the bundled securities firms, and a firm's own extension."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from kabuguard.intel.phish.registry import RegistryError, bundled_registries, load_registry
from kabuguard.intel.phish.score import Scorer


def test_securities_registry_covers_the_large_online_brokers() -> None:
    registry = load_registry("securities-jp")
    assert len(registry.brands) >= 20
    ids = {b.id for b in registry.brands}
    assert {"sbi-sec", "rakuten-sec", "monex", "mufg-esmart", "matsui", "smbc-nikko", "nomura", "daiwa", "mizuho-sec",
            "gmo-click", "dmm-kabu", "paypay-sec", "moomoo"} <= ids
    for brand in registry.brands:
        assert brand.official_domains and brand.tokens
        assert any(not n.isascii() for n in brand.names), f"{brand.id} needs its Japanese name"
    assert registry.brand("sbi-sec").shared_tokens == ("sbi",)
    assert "kabu" in registry.brand("mufg-esmart").shared_tokens  # kabu.com's label is a common word


def test_a_firm_extends_a_bundled_registry(tmp_path: Path) -> None:
    own = tmp_path / "ourfirm.yaml"
    own.write_text(
        "name: ourfirm\ninclude: [securities-jp]\nbrands:\n"
        "  - id: kabuguard-sec\n    name: カブガード証券\n    official_domains: [kabuguard-sec.co.jp]\n"
        "    tokens: [kabuguard]\n    login_paths: [/member/login.do]\n",
        encoding="utf-8",
    )
    registry = load_registry(str(own))
    assert registry.name == "securities-jp+ourfirm"
    scorer = Scorer(registry)
    assert scorer.score("kabuguard-sec-login.top").brand == "kabuguard-sec"
    assert scorer.score("sbisec-login.top").brand == "sbi-sec"
    assert scorer.score("https://www.kabuguard-sec.co.jp/member/login.do").official


def test_registry_errors_name_the_file_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="one of"):
        load_registry("no-such-registry")
    bad = tmp_path / "bad.yaml"
    bad.write_text("brands:\n  - id: x\n    name: X\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="official_domains"):
        load_registry(str(bad))
    bad.write_text("brands: [x: {\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="not valid YAML"):
        load_registry(str(bad))
    bad.write_text("- just\n- a list\n", encoding="utf-8")
    with pytest.raises(RegistryError, match="mapping"):
        load_registry(str(bad))
    assert {"securities-jp", "cards-jp"} <= set(bundled_registries())


def test_a_registry_entry_of_the_wrong_shape_is_refused_by_name(tmp_path: Path) -> None:
    base = {"id": "example-sec", "name": "Example", "official_domains": ["example-sec.co.jp"]}
    for field, value in (("official_domains", "example-sec.co.jp"), ("tokens", [""]), ("tokens", "example"),
                         ("official_domains", [123])):
        path = tmp_path / f"{field}.yaml"
        path.write_text(yaml.safe_dump({"brands": [{**base, field: value}]}), encoding="utf-8")
        with pytest.raises(RegistryError, match=f"`{field}` must be a list of non-empty strings"):
            load_registry(str(path))


def test_an_official_domain_written_as_a_url_is_refused_by_brand_and_value(tmp_path: Path) -> None:
    base = {"id": "example-sec", "name": "Example", "official_domains": ["example-sec.co.jp"]}
    for value in ("https://www.example-sec.co.jp/", "example-sec.co.jp:443", "example-sec.co.jp/login", "me@example-sec.co.jp"):
        path = tmp_path / "ourfirm.yaml"
        path.write_text(yaml.safe_dump({"brands": [{**base, "official_domains": [value]}]}), encoding="utf-8")
        with pytest.raises(RegistryError, match=f"brand example-sec: official domain '{value}' is not a host name"):
            load_registry(str(path))


@pytest.mark.parametrize("field", ["corroborators", "neighbours", "include"])
def test_a_registry_word_list_written_as_one_string_is_refused_by_name(tmp_path: Path, field: str) -> None:
    """`corroborators: kabu` was read letter by letter: k, a, b, u each turned a group token into evidence."""
    path = tmp_path / "ours.yaml"
    path.write_text(f"name: ours\n{field}: kabu\nbrands:\n  - id: our-sec\n    official_domains: [example-sec.co.jp]\n",
                    encoding="utf-8")
    with pytest.raises(RegistryError, match=re.escape(f"{path}: `{field}` must be a list of non-empty strings, got 'kabu'")):
        load_registry(str(path))
    path.write_text(path.read_text(encoding="utf-8").replace(f"{field}: kabu", f"{field}: [securities-jp]"), encoding="utf-8")
    assert load_registry(str(path)).brands
