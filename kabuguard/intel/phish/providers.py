"""Free hosts and URL shorteners: which part of a URL names the provider's customer.

A phish on a provider that the Public Suffix List does not list as a private suffix has the
provider's registered domain (`sites.google.com/view/x` is under google.com, `bit.ly/3xYz` under
bit.ly). Sharing or taking down that domain would name every customer of the provider, so the
domain a peer receives is the customer's: its host under the provider (`x.weebly.com`), or on the
provider's own host the host and the customer's folder (`sites.google.com/view/x`, `bit.ly/3xYz`).
"""

from __future__ import annotations

from collections.abc import Iterable

from kabuguard.intel.phish.domains import Host, Target, path_as_written, split_host


class Providers:
    """Free hosts and shorteners by registered domain; `folders` are the path segments a provider
    puts before its customer's own (`view` in `sites.google.com/view/<site>`)."""

    def __init__(self, free_hosts: Iterable[str], shorteners: Iterable[str], folders: Iterable[str]) -> None:
        self.free_hosts: dict[str, list[str]] = {}
        for suffix in free_hosts:
            self.free_hosts.setdefault(split_host(suffix).registered, []).append(suffix)
        self.shorteners = frozenset(shorteners)
        self.folders = frozenset(folders)

    def free_host(self, h: Host) -> str | None:
        """The free host or dynamic-DNS provider serving this host, if any."""
        if h.private_suffix:
            return h.suffix
        return next((s for s in self.free_hosts.get(h.registered, ()) if h.host == s or h.host.endswith("." + s)), None)

    def owner(self, target: Target) -> str:
        """The domain a takedown or a peer should name: the registered domain, or the customer's
        part of a provider that is no private suffix (lower case, as the path is, but for a
        shortener's link: its code is case-sensitive, and lower-cased it names another link)."""
        h = target.host
        own = [*self.free_hosts.get(h.registered, ()), *([h.registered] if h.registered in self.shorteners else ())]
        if h.private_suffix or h.host not in own:
            under = not h.private_suffix and any(h.host.endswith("." + s) for s in own)
            return h.host if under else h.registered  # x.weebly.com is the customer's own host
        path = path_as_written(target.raw) if h.registered in self.shorteners else target.path.split("?", 1)[0]
        segments = [s for s in path.split("/") if s]
        keep = 1 + (len(segments) > 1 and segments[0] in self.folders)
        return "/".join([h.host, *segments[:keep]])
