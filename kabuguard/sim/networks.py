"""Real IPv4 blocks to draw customers' and attackers' addresses from (see networks.yaml)."""

from __future__ import annotations

import bisect
import ipaddress
import zlib
from dataclasses import dataclass, replace
from importlib import resources

import numpy as np
import yaml


@dataclass(frozen=True, slots=True)
class Network:
    """One provider: its name, the AS name substring and country geo-IP data report for it."""

    isp: str
    asn: str
    country: str | None
    weight: float
    blocks: tuple[tuple[int, int], ...]  # (first address, size)
    nat_pool: tuple[str, ...] = ()  # a carrier's shared NAT addresses, if any

    def address(self, rng: np.random.Generator) -> str:
        if self.nat_pool:
            return self.nat_pool[int(rng.integers(len(self.nat_pool)))]
        return self._any_address(rng)

    def _any_address(self, rng: np.random.Generator) -> str:
        first, size = self.blocks[int(rng.integers(len(self.blocks)))]
        # Stay off .0 and .255 so the address looks like a host, not a network or broadcast.
        offset = int(rng.integers(size))
        offset = offset - offset % 256 + 1 + offset % 254
        return str(ipaddress.IPv4Address(first + offset))

    def with_nat_pool(self, size: int) -> Network:
        """The same network, its addresses limited to a fixed pool (fixed per ISP, not per run)."""
        rng = np.random.default_rng(zlib.crc32(self.isp.encode()))
        return replace(self, nat_pool=tuple(self._any_address(rng) for _ in range(size)))


class Networks:
    """The provider pools by category: residential_jp, mobile_jp, residential_abroad, hosting, office."""

    def __init__(self) -> None:
        raw = yaml.safe_load(resources.files("kabuguard.sim").joinpath("networks.yaml").read_text())
        self.pools: dict[str, list[Network]] = {
            category: [_network(entry) for entry in entries] for category, entries in raw.items()
        }
        self._cdf = {
            category: (np.cumsum([n.weight for n in nets]) / sum(n.weight for n in nets)).tolist()
            for category, nets in self.pools.items()
        }

    def pick(self, category: str, rng: np.random.Generator, exclude: Network | None = None) -> Network:
        """A provider of `category` by weight, other than `exclude` (a proxy is never the victim's own ISP)."""
        nets, cdf = self.pools[category], self._cdf[category]
        while True:
            net = nets[min(bisect.bisect_left(cdf, rng.random()), len(nets) - 1)]
            if net is not exclude:
                return net

    def address(self, category: str, rng: np.random.Generator) -> str:
        return self.pick(category, rng).address(rng)


def _network(entry: dict) -> Network:
    network = Network(
        isp=entry["isp"],
        asn=entry["asn"],
        country=entry.get("country"),
        weight=float(entry["weight"]),
        blocks=tuple((int(n.network_address), n.num_addresses) for n in map(ipaddress.IPv4Network, entry["blocks"])),
    )
    return network.with_nat_pool(entry["nat_pool"]) if "nat_pool" in entry else network
