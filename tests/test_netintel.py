"""Offline network classification: owner, country and kind from the bundled data."""

from __future__ import annotations

import ipaddress

from kabuguard.netintel import _V4, UNKNOWN, Network, _reserved_v4, _v4_int, country_distance_km, netintel


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


def test_an_address_between_the_owner_ranges_has_no_owner() -> None:
    """With IPv6 data loaded geoip2fast gives an IPv4 address in a gap between ASN ranges the
    owner of the range before it: 1.0.2.127 would be CLOUDFLARENET's (1.0.0.0/24), a hosting
    network, and so would the rest of 1.0.2.0/24 once the first answer stood for the /24."""
    from kabuguard.netintel import NetIntel

    net = NetIntel()
    for ip in ("1.0.2.127", "1.0.2.1", "1.1.4.255"):  # the gaps after 1.0.0.0/24 and 1.1.1.0/24
        found = net.lookup(ip)
        assert (found.asn, found.kind) == ("", "unknown"), ip
    assert net.lookup("1.0.2.127").country == "CN"  # the country ranges have no such gap
    for ip in ("1.0.0.5", "1.1.1.1"):
        found = net.lookup(ip)
        assert (found.asn, found.kind) == ("CLOUDFLARENET", "hosting"), ip
    # IPv6: geoip2fast checks these against the IPv6 size, so a gap is no owner there already.
    assert net.lookup("2001:200::1").asn == "WIDE Project"
    assert net.lookup("2001:256:0:7fff::1") == Network(prefix="2001:256::/48", asn="", country="CN", kind="unknown")


def test_a_prefix_is_remembered_only_when_the_owner_range_holds_all_of_it() -> None:
    """A /24 whose first half is a gap after a wide range and whose second half is another
    owner's /25: the gap's answer (no owner) must not stand for the /25's addresses, in either order."""
    from types import SimpleNamespace

    from kabuguard.netintel import NetIntel

    ranges = [(int(ipaddress.ip_address(cidr.split("/")[0])), cidr, name)
              for cidr, name in (("20.0.0.0/16", "AMAZON-02"), ("20.1.0.128/25", "Example Telecom"))]

    class Database:
        """geoip2fast as loaded with IPv6 data: the ASN range before an address, whether it holds it or not."""

        def lookup(self, ip: str) -> SimpleNamespace:
            value = int(ipaddress.ip_address(ip))
            _, cidr, name = max(r for r in ranges if r[0] <= value)
            return SimpleNamespace(is_private=False, country_code="US", cidr="20.0.0.0/8", asn_name=name, asn_cidr=cidr)

    for order in (("20.1.0.5", "20.1.0.200"), ("20.1.0.200", "20.1.0.5")):
        net = NetIntel()
        net._db = Database()
        found = {ip: net.lookup(ip) for ip in order}
        assert (found["20.1.0.5"].asn, found["20.1.0.5"].kind) == ("", "unknown"), order
        assert found["20.1.0.200"].asn == "Example Telecom", order
        assert "20.1.0.0/24" not in net._prefixes, order
    # A /24 wholly in the gap is still remembered, and one an owner's range holds is too.
    net = NetIntel()
    net._db = Database()
    assert net.lookup("20.2.0.1").asn == "" and net.lookup("20.0.7.1").asn == "AMAZON-02"
    assert {"20.2.0.0/24", "20.0.7.0/24"} <= set(net._prefixes)
