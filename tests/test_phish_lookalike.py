"""Lookalikes of securities brands: the kind of edit, the brand, and never an official domain."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kabuguard.intel.phish.lookalike import edit_kind
from kabuguard.intel.phish.registry import load_registry
from kabuguard.intel.phish.score import Scorer, Verdict

_SCORER = Scorer(load_registry("securities-jp"))


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return _SCORER


def reasons(verdict: Verdict) -> dict[str, str]:
    return {r.code: r.detail for r in verdict.reasons}


@pytest.mark.parametrize(
    ("found", "token", "kind"),
    [
        ("sbiseec", "sbisec", "repetition"),
        ("sbixsec", "sbisec", "insertion"),
        ("sbsec", "sbisec", "omission"),
        ("sibsec", "sbisec", "transposition"),
        ("sbisoc", "sbisec", "vowel-swap"),
        ("sbisek", "sbisec", "substitution"),
        ("sbisecxx", "sbisec", None),
    ],
)
def test_edit_kind(found: str, token: str, kind: str | None) -> None:
    assert edit_kind(found, token) == kind


@pytest.mark.parametrize(
    ("domain", "brand", "code", "detail"),
    [
        ("monnex-login.top", "monex", "lookalike", "repetition"),  # a doubled letter
        ("monexs.jp", "monex", "brand-token", ""),  # the whole token at a segment's start
        ("matsuil-sec.com", "matsui", "shared-token-corroborated", ""),
        ("smbcnikkko.com", "smbc-nikko", "lookalike", "repetition"),
        ("smbcnikkxo.com", "smbc-nikko", "lookalike", "insertion"),
        ("smbcnkko.com", "smbc-nikko", "lookalike", "omission"),
        ("smbcnikok.com", "smbc-nikko", "lookalike", "transposition"),
        ("rakutenseq.jp", "rakuten-sec", "lookalike", "substitution"),
        ("ѕbisec.com", "sbi-sec", "homoglyph", "idn"),  # Cyrillic ѕ
        ("xn--bisec-g2e.com", "sbi-sec", "homoglyph", "idn"),  # the same, as DNS carries it
        ("rnonex.co.jp", "monex", "homoglyph", "ascii-homoglyph"),  # rn for m
        ("m0nex-secure.net", "monex", "homoglyph", "ascii-homoglyph"),  # zero for o
        ("sndc-nikko.com", "smbc-nikko", "homoglyph", "ascii-homoglyph"),  # n for m and d for b: two edits, read alike
        ("nonex-login.top", "monex", "homoglyph", "ascii-homoglyph"),
        ("loginmonex1.top", "monex", "brand-token", ""),  # a digit ends the token, though 1 reads as l
        ("mysbisecc.top", "sbi-sec", "lookalike", "repetition"),  # a keyword glued before a lookalike
        ("www.sbisec.urban-shop.top", "sbi-sec", "brand-token", ""),  # a dot ends the token: not sec|urity
        ("www.sbisec.co.jp.account-check.top", "sbi-sec", "official-domain-in-host", ""),
        ("click-sec.co", "gmo-click", "brand-token", "tld-swap"),
        ("mizuho-sc.net", "mizuho-sec", "brand-token", "tld-swap"),
    ],
)
def test_lookalikes_are_attributed_with_their_kind(scorer: Scorer, domain: str, brand: str, code: str, detail: str) -> None:
    verdict = scorer.score(domain)
    assert verdict.brand == brand
    assert verdict.alert(scorer.threshold)
    assert reasons(verdict)[code] == detail


def test_cloned_login_path_names_the_brand_on_a_random_host(scorer: Scorer) -> None:
    verdict = scorer.score("https://qzkxv.top/ETGate/?_ControlID=WPLETlgR001Control")
    assert verdict.brand == "sbi-sec" and verdict.alert(scorer.threshold)
    assert "cloned-login-path" in reasons(verdict)


@pytest.mark.parametrize(
    ("url", "brand", "code"),
    [
        ("https://qzkxv.top/wp-content/themes/20/sbisec.co.jp/index.php", "sbi-sec", "official-domain-in-path"),
        ("https://qzkxv.top/r.php?u=https%3A%2F%2Fwww.rakuten-sec.co.jp%2Fits%2F", "rakuten-sec", "official-domain-in-path"),
        ("https://qzkxv.top/monexm/process/", "monex", "path-brand-token"),  # a kit folder opening with the token
        ("https://qzkxv.top/sbi-sec/login.php", "sbi-sec", "shared-token-corroborated"),  # group token beside sec
    ],
)
def test_the_path_names_the_brand_on_a_random_host(scorer: Scorer, url: str, brand: str, code: str) -> None:
    verdict = scorer.score(url)
    assert verdict.brand == brand and verdict.alert(scorer.threshold)
    assert code in reasons(verdict)


def test_a_random_host_with_an_unrelated_path_is_not_flagged(scorer: Scorer) -> None:
    for url in ["https://qzkxvbnm.top/blog/2024/05/login.php?id=3", "https://xkqzvbnmpl.top/wp-content/themes/20/index.php",
                "https://qzkxv.top/sbi/login.php", "https://qzkxv.top/go?to=xsbisec.co.jp"]:
        verdict = scorer.score(url)
        assert not verdict.alert(scorer.threshold), (url, verdict.reasons)


def test_group_token_alone_names_no_brand(scorer: Scorer) -> None:
    # rakuten is the whole group: a Rakuten Ichiba phish is not a 楽天証券 phish
    group_only = scorer.score("rakuten-point-login.xyz")
    assert group_only.brand is None and not group_only.alert(scorer.threshold)
    assert "shared-token" in reasons(group_only)
    corroborated = scorer.score("rakuten-kabu.xyz")
    assert corroborated.brand == "rakuten-sec" and corroborated.alert(scorer.threshold)


def test_short_tokens_only_match_whole_segments(scorer: Scorer) -> None:
    assert scorer.score("deposit-ladder.com").brand is None  # no `epos`, no `sbi` inside words
    assert scorer.score("smdc-card.cc").brand is None  # not nikko, not mufg


@pytest.mark.parametrize("registry", ["securities-jp", "cards-jp"])
def test_official_domains_are_never_flagged(registry: str) -> None:
    scorer = Scorer(load_registry(registry))
    for brand in scorer.registry.brands:
        for domain in brand.official_domains:
            for probe in (domain, f"www.{domain}", f"https://login.{domain}/", *(f"https://{domain}{p}" for p in brand.login_paths)):
                verdict = scorer.score(probe)
                assert verdict.official and verdict.score == 0.0 and not verdict.alert(0.0), probe
                assert verdict.brand == brand.id or verdict.registered_domain != domain


def test_scores_stay_in_unit_interval_with_reasons(scorer: Scorer) -> None:
    for domain in ["a.b.c.d.e.sbisec.co.jp.xn--80ak6aa92e.duckdns.org", "8.8.8.8", "bit.ly/x", "qwrtzpxk.top"]:
        verdict = scorer.score(domain)
        assert 0.0 <= verdict.score <= 1.0
        assert verdict.score == 0.0 or verdict.reasons


def test_context_reasons_on_brandless_hosts(scorer: Scorer) -> None:
    assert reasons(scorer.score("xkqzvbnmpl.top")).keys() == {"suspicious-tld", "random-label"}
    assert "random-label" not in reasons(scorer.score("smbc-nikko-login.top"))  # words, not a machine label
    assert reasons(scorer.score("a.b.c.example.duckdns.org")).keys() >= {"free-host", "deep-subdomain"}
    assert scorer.score("bit.ly/abc").reasons[0].code == "url-shortener"


@given(st.text(max_size=60))
@settings(max_examples=300, deadline=None)
def test_any_line_scores_in_unit_interval_or_is_rejected(text: str) -> None:
    try:
        verdict = _SCORER.score(text)
    except ValueError:
        return
    assert 0.0 <= verdict.score <= 1.0
