"""The brand registry: which brands a monitor protects, as data an analyst can read and extend.

A registry is a YAML file (`kabuguard/data/brands/*.yaml`). Each brand carries its names (for
people and for mapping feed labels), its official registered domains (never flagged), the tokens
that name it inside a host, tokens it shares with sister companies (weaker evidence), and the paths
of its real login pages, which phishing kits copy. A firm extends a bundled registry by writing
its own file with ``include: [securities-jp]`` and its extra brands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import yaml

from kabuguard.intel.phish.domains import is_host_name, split_host

_BUNDLED = files("kabuguard").joinpath("data/brands")
_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True, slots=True)
class Brand:
    """One protected brand. Tokens are lower case without hyphens or dots (see `compact`)."""

    id: str
    name: str
    names: tuple[str, ...]  # every name and alias, Japanese and romanised
    official_domains: tuple[str, ...]
    tokens: tuple[str, ...]
    shared_tokens: tuple[str, ...]
    login_paths: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Registry:
    """The brands one monitor protects, with the file names they came from.

    `corroborators` are the family's words (sec, kabu for brokers; card for issuers) that turn a
    shared group token into evidence for the brand; `neighbours` are real names one edit away
    from a token (another firm's brand, a common word) that must not be read as lookalikes.
    """

    name: str
    brands: tuple[Brand, ...]
    sources: tuple[str, ...]
    corroborators: tuple[str, ...] = ()
    neighbours: tuple[str, ...] = ()

    def brand(self, brand_id: str) -> Brand:
        return next(b for b in self.brands if b.id == brand_id)


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names the file, the brand and the fix."""


def compact(token: str) -> str:
    """A token as the registry keeps it: lower case, no hyphens or dots (`rakuten-sec` → `rakutensec`)."""
    return token.lower().replace("-", "").replace(".", "")


def bundled_registries() -> list[str]:
    """Names of the registries shipped with Kabuguard (usable in ``include`` and ``--registry``)."""
    return sorted(p.name.removesuffix(".yaml") for p in _BUNDLED.iterdir() if p.name.endswith(".yaml"))


def _read(source: str) -> tuple[dict, str]:
    path = Path(source)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.exists():
            raise RegistryError(f"registry file {source} does not exist; give a path or one of {bundled_registries()}")
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif source in bundled_registries():
        text, where = _BUNDLED.joinpath(f"{source}.yaml").read_text(encoding="utf-8"), source
    else:
        raise RegistryError(f"unknown registry {source!r}; give a YAML path or one of {bundled_registries()}")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise RegistryError(f"{where} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(b, dict) for b in data.get("brands", [])):
        raise RegistryError(f"{where}: a registry is a mapping with a `brands:` list of mappings (see securities-jp.yaml)")
    return data, where


def _texts(entry: dict, key: str, where: str) -> list[str]:
    """A list of non-empty strings, or a clear error naming `where` (the file, and the brand for
    a brand's field): a bare string would be read letter by letter, and an empty token would
    match everything."""
    value = entry.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and compact(v.strip()) for v in value):
        raise RegistryError(f"{where}: `{key}` must be a list of non-empty strings, got {value!r}")
    return [v.strip() for v in value]


def _brand(entry: dict, where: str) -> Brand:
    brand_id = entry.get("id", "")
    if not _ID.match(str(brand_id)):
        raise RegistryError(f"{where}: brand id {brand_id!r} must be lower-case letters, digits and hyphens")
    at = f"{where}: brand {brand_id}"
    domains = _texts(entry, "official_domains", at)
    if not domains:
        raise RegistryError(f"{at} needs official_domains (its real registered domains)")
    officials = tuple(d.lower().strip(".") for d in domains)
    for domain in officials:
        if not is_host_name(domain):  # `https://www.example-sec.co.jp/` read as `https:` made the firm's own domain alert
            raise RegistryError(f"{at}: official domain {domain!r} is not a host name; write the "
                                f"domain alone, without scheme, port, path or @ (example-sec.co.jp)")
    # The registered label of each official domain is a token too (`sbisec` for sbisec.co.jp), but
    # not a host on a shared domain (kabu.dmm.com would make `kabu` a token), and a label listed
    # under shared_tokens stays weak (kabu.com's `kabu` is also the common word for stock).
    shared = {compact(t) for t in _texts(entry, "shared_tokens", at)}
    tokens = {compact(t) for t in _texts(entry, "tokens", at)}
    for domain in officials:
        host = split_host(domain)
        if host.registered == host.host and not host.subdomain and len(host.registered) > len(host.suffix) + 4:
            tokens.add(compact(host.registered.removesuffix("." + host.suffix)))
    return Brand(
        id=brand_id,
        name=entry.get("name", brand_id),
        names=tuple([entry.get("name", brand_id), *_texts(entry, "names", at),
                     *_texts(entry, "aliases", at)]),
        official_domains=officials,
        tokens=tuple(sorted(tokens - shared)),
        shared_tokens=tuple(sorted(shared)),
        login_paths=tuple(p.lower() for p in _texts(entry, "login_paths", at)),
    )


def load_registry(*sources: str) -> Registry:
    """Load and merge registries (paths or bundled names); later brands with the same id win."""
    brands: dict[str, Brand] = {}
    names: list[str] = []
    seen: list[str] = []
    corroborators: set[str] = set()
    neighbours: set[str] = set()

    def visit(source: str) -> None:
        data, where = _read(source)
        if where in seen:
            return
        seen.append(where)
        for included in _texts(data, "include", where):
            visit(included)
        names.append(data.get("name", Path(where).stem))
        corroborators.update(compact(w) for w in _texts(data, "corroborators", where))
        neighbours.update(compact(w) for w in _texts(data, "neighbours", where))
        for entry in data.get("brands", []):
            brand = _brand(entry, where)
            brands[brand.id] = brand

    for source in sources:
        visit(source)
    if not brands:
        raise RegistryError(f"no brands in {', '.join(sources)}; a registry needs a `brands:` list")
    return Registry("+".join(names), tuple(brands.values()), tuple(seen), tuple(sorted(corroborators)), tuple(sorted(neighbours)))
