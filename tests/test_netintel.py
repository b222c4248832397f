"""Offline network classification: owner, country and kind from the bundled data."""

from __future__ import annotations

import ipaddress

from kabuguard.netintel import _V4, UNKNOWN, _reserved_v4, _v4_int, country_distance_km, netintel


def test_hosting_mobile_fixed_private_and_invalid_addresses() -> None:
    net = netintel()
    assert net.lookup("13.112.0.1").kind == "hosting"  # AWS Tokyo
    assert net.lookup("45.32.1.1").kind == "hosting"  # Vultr
    assert net.lookup("49.96.1.1").kind == "mobile"  # NTT Docomo
    home = net.lookup("126.1.2.3")
    assert (home.kind, home.country, home.prefix) == ("fixed", "JP", "126.1.2.0/24")
    assert net.lookup("192.168.1.10").kind == "private"
    assert net.lookup("1.2.3").kind == "unknown" and net.lookup(None).kind == "unknown"
    assert net.lookup("2001:268:c000::1").prefix == "2001:268:c000::/48"


def test_country_distances() -> None:
    assert country_distance_km("JP", "JP") == 0.0
    assert 8000 < country_distance_km("JP", "US") < 11000
    assert country_distance_km("JP", "XX") is None


def test_reserved_ipv4_ranges_agree_with_the_standard_library() -> None:
    # Every edge of every reserved range, either side, and a spread of public addresses.
    edges = [int(n.network_address) + d for n in _V4._private_networks for d in (-1, 0, 1)] + \
        [int(n.broadcast_address) + d for n in _V4._private_networks for d in (-1, 0, 1)]
    for value in [*edges, *range(0, 2**32, 7_919_993)]:
        if 0 <= value < 2**32:
            addr = ipaddress.IPv4Address(value)
            expected = addr.is_private or addr.is_loopback or addr.is_link_local
            assert _reserved_v4(value) == expected, addr
            assert _v4_int(str(addr)) == value


def test_addresses_the_standard_library_rejects_are_unknown() -> None:
    net = netintel()
    for text in ("1.2.3.04", "01.2.3.4", "1.2.3.256", "1.2.3.", "1..3.4", "1.2.3.4.5", "1.2.3.+4", "١.2.3.4"):
        assert _v4_int(text) is None, text
        assert net.lookup(text) is UNKNOWN, text
    assert net.lookup("10.1.2.3").kind == net.lookup("10.1.2.99").kind == "private"
    # A /24 mixing reserved and public addresses is decided address by address.
    for text in ("192.0.0.1", "192.0.0.9", "192.0.0.8"):
        assert (net.lookup(text).kind == "private") == ipaddress.ip_address(text).is_private, text


def test_a_prefix_the_database_splits_is_classified_address_by_address_in_any_order() -> None:
    """51.77.242.0/24 is two /25s in two countries in the bundled data: each address gets its own
    half's country whichever address of the /24 the process saw first."""
    from kabuguard.netintel import NetIntel

    low, high = "51.77.242.18", "51.77.242.200"
    first, second = NetIntel(), NetIntel()
    assert first.lookup(low).country != first.lookup(high).country, "the bundled data splits this /24"
    assert (second.lookup(high).country, second.lookup(low).country) == (first.lookup(high).country,
                                                                        first.lookup(low).country)
    # A /24 the database holds whole is still looked up once.
    whole = NetIntel()
    assert whole.lookup("8.8.8.8") == whole.lookup("8.8.8.9")
    assert "8.8.8.0/24" in whole._prefixes


def test_special_purpose_space_is_no_network_and_mapped_ipv6_is_its_ipv4() -> None:
    net = netintel()
    for ip in ("100.64.1.1", "224.0.0.1", "::2"):  # carrier-grade NAT, multicast, reserved
        found = net.lookup(ip)
        assert (found.kind, found.asn, found.country) == ("private", "", ""), ip
    assert net.lookup("192.0.0.8").country == ""  # the database's "--" is no country
    assert net.lookup("::ffff:153.240.1.1") == net.lookup("153.240.1.1")
    assert net.lookup("153.240.1.1").country == "JP"
