"""Public-suffix parsing, offline: the registered domain is what a takedown names."""

from __future__ import annotations

import pytest

from kabuguard.intel.phish.domains import is_host_name, parse_target, split_host


@pytest.mark.parametrize(
    ("host", "registered", "suffix", "private"),
    [
        ("www.sbisec.co.jp", "sbisec.co.jp", "co.jp", False),
        ("co.jp", "co.jp", "co.jp", False),  # a bare public suffix is its own registered domain
        ("kabu.dmm.com", "dmm.com", "com", False),
        ("a.b.duckdns.org", "b.duckdns.org", "duckdns.org", True),  # the provider holds the suffix
        ("x.workers.dev", "x.workers.dev", "workers.dev", True),
        ("foo.bar.ck", "foo.bar.ck", "bar.ck", False),  # wildcard rule *.ck
        ("www.ck", "www.ck", "ck", False),  # exception rule !www.ck
        ("shop.foo.kawasaki.jp", "shop.foo.kawasaki.jp", "foo.kawasaki.jp", False),  # *.kawasaki.jp
        ("www.city.kawasaki.jp", "city.kawasaki.jp", "kawasaki.jp", False),  # !city.kawasaki.jp
        ("login.unknown-tld-xyz", "login.unknown-tld-xyz", "unknown-tld-xyz", False),
    ],
)
def test_registered_domain_follows_the_psl(host: str, registered: str, suffix: str, private: bool) -> None:
    h = split_host(host)
    assert (h.registered, h.suffix, h.private_suffix) == (registered, suffix, private)


def test_punycode_is_decoded_and_kept() -> None:
    h = split_host("xn--bisec-g2e.com")
    assert h.idn and h.host == "ѕbisec.com"
    assert h.ascii_host == "xn--bisec-g2e.com"
    assert split_host("ѕbisec.com").ascii_host.startswith("xn--")


def test_urls_wildcards_and_ips() -> None:
    t = parse_target("https://WWW.Example.co.jp:8443/ETGate/?a=1")
    assert t.host.registered == "example.co.jp" and t.path == "/etgate/?a=1"
    assert parse_target("*.login-sbisec.top").host.host == "login-sbisec.top"
    assert parse_target("http://203.0.113.9/login").host.is_ip
    with pytest.raises(ValueError):
        parse_target("http://")


def test_an_internationalised_name_idna_takes_is_a_host_and_junk_is_not() -> None:
    """The host check refused `ヤマダ・デンキ.jp` (its middle dot is no letter, but IDNA takes it)."""
    for host in ("ヤマダ・デンキ.jp", "xn--nckubv4g3a7g8b.jp", "楽天証券.com", "sbi-sec.top"):
        assert is_host_name(host), host
    assert parse_target("https://ヤマダ・デンキ.jp/login").host.registered == "ヤマダ・デンキ.jp"
    for junk in ('"sbi-sec.top"', "sbi-sec.top,2024", "楽天,証券.com", "楽天証券.com\t", "a..b"):
        assert not is_host_name(junk), junk


@pytest.mark.parametrize("url", ["http://3232235777/login", "http://0xc0a80101/", "http://0300.0250.1.1/",
                                 "http://192.168.257/"])
def test_an_address_spelt_as_a_number_is_the_address_a_browser_visits(url: str) -> None:
    """`http://3232235777/` is 192.168.1.1 to a browser; it was read as a host name, no IP."""
    host = parse_target(url).host
    assert (host.host, host.is_ip) == ("192.168.1.1", True)


@pytest.mark.parametrize("url", ["http:/www.sbisec-login.top/etgate", "https:www.sbisec-login.top/etgate",
                                 "https:\\\\www.sbisec-login.top\\etgate", "HTTPS:///www.sbisec-login.top/etgate",
                                 "//www.sbisec-login.top/etgate"])
def test_a_web_scheme_with_any_slashes_or_none_is_followed_by_the_host(url: str) -> None:
    """Browsers go to the host after `https:` whatever the slashes; the scheme word was read as the host."""
    t = parse_target(url)
    assert (t.host.host, t.path) == ("www.sbisec-login.top", "/etgate")


@pytest.mark.parametrize(("bare", "address"), [("127.1", "127.0.0.1"), ("0x7f000001", "127.0.0.1"),
                                               ("3232235777", "192.168.1.1"), ("192.168.1.1", "192.168.1.1")])
def test_a_bare_number_is_the_address_its_url_visits(bare: str, address: str) -> None:
    """`127.1` on a line was a domain under the suffix `1`, `http://127.1/` the address 127.0.0.1."""
    for text in (bare, f"http://{bare}/"):
        host = parse_target(text).host
        assert (host.host, host.is_ip, host.registered) == (address, True, address), text


@pytest.mark.parametrize("text", ["1.2.3.4.5", "http://1.2.3.4.5/", "999.1.1.1", "http://999.1.1.1/", "www.example.0x1f",
                                  "login.sbisec.123", "-", "_", "---", "http://-/", "sbisec.-.top", "-sbisec.top", "sbisec-.top",
                                  "_sbisec.top", "ѕbisec-.com", "http://sbisec-login.top:99999/", "http://sbisec-login.top:port/"])
def test_no_host_a_browser_would_refuse_is_scored(text: str) -> None:
    """`1.2.3.4.5` was scored as the domain `4.5`, `999.1.1.1` as an IP, `-` and `_` as hosts, and a
    port past 65535 or not a number was ignored."""
    with pytest.raises(ValueError):
        parse_target(text)


def test_inner_hyphens_and_underscores_stay_host_names() -> None:
    for host in ("my_site.blogspot.com", "smbc--card.top", "xn--bisec-g2e.com", "a.b.1x", "0x.example.com", "http://a.b:8443/"):
        assert parse_target(host).host.host, host


@pytest.mark.parametrize("text", ["hxxps://www.sbisec-login[.]top/etgate", "hXXps[:]//www(.)sbisec-login(.)top/etgate",
                                  "https[://]www[dot]sbisec-login[.]top/etgate", "www.sbisec-login{.}top/etgate"])
def test_a_defanged_url_is_the_url_it_stands_for(text: str) -> None:
    """Threat feeds and analysts share `hxxps://evil[.]top`: it was refused as a bad IPv6 address
    without naming the line, so a pasted indicator list lost its defanged entries."""
    t = parse_target(text)
    assert (t.host.host, t.path) == ("www.sbisec-login.top", "/etgate")


def test_an_unparseable_url_is_named_in_its_error() -> None:
    with pytest.raises(ValueError, match=r"unparseable URL 'https://\[zz\]/x'"):
        parse_target("https://[zz]/x")
