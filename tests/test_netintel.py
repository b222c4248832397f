"""Offline network classification: owner, country and kind from the bundled data."""

from __future__ import annotations

from kabuguard.netintel import country_distance_km, netintel


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
