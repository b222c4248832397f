"""Offline public-suffix parsing: split a host into subdomain, registered domain and suffix.

The Public Suffix List is read from the snapshot that the `publicsuffixlist` package ships, so
nothing is fetched at run time. Private suffixes (``duckdns.org``, ``workers.dev``…) are kept as
suffixes: ``x.duckdns.org`` is its own registered domain, and the provider that can take it down
is the private suffix, which is exactly what a takedown request needs to know.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import publicsuffixlist

_URL_CHARS = re.compile(r"[/:?#@\[\s\\]")
# A web scheme and the slashes after it, however many and whichever way (`https:x`, `http:/x`,
# `https:\\x`: browsers go to x), or the two a scheme-relative link starts with (`//x`).
_WEB_START = re.compile(r"(https?|ftp|wss?):[/\\]*|[/\\]{2,}", re.IGNORECASE)
# How threat feeds and analysts defang what they share so that nobody clicks it: `hxxps://`,
# `evil[.]com`, `evil(.)com`, `evil[dot]com`, `https[:]//`. No URL or host holds these written so.
_DEFANGED = re.compile(r"^h(?:xx|\*\*)p(s?)(?=\[?:)|\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\[:\]|\[://\]", re.IGNORECASE)
_REFANG = {"[.]": ".", "(.)": ".", "{.}": ".", "[dot]": ".", "(dot)": ".", "[:]": ":", "[://]": "://"}
# Letters, digits, hyphens (and the underscores browsers accept) per label, labels between dots.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # a tab or NUL inside a line glues fields; urlsplit drops tabs
# Bytes that were not UTF-8, as the readers keep them (errors="surrogateescape").
_UNDECODABLE = re.compile("[\udc80-\udcff]")
# A label starts and ends with a letter or digit: `-`, `_` or `---` name no host.
_ASCII_LABEL = r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?"
_ASCII_HOST = re.compile(rf"{_ASCII_LABEL}(?:\.{_ASCII_LABEL})*\.?")
_HEX_NUMBER = re.compile(r"0x[0-9a-f]*")
MAX_HOST = 253  # DNS's limit; longer is no host, and matching grows with the square of its length
# What a browser reads as a dot, and what it drops from a host name (soft hyphen, zero widths).
_HOST_FOLD = {0x3002: ".", 0xFF0E: ".", 0xFF61: ".", 0x00AD: None, 0x200B: None, 0x200C: None,
              0x200D: None, 0x2060: None, 0xFEFF: None}


class Host(NamedTuple):
    """A host name split along the Public Suffix List (a tuple: millions are made per hour)."""

    host: str  # lower-case, IDN labels decoded to Unicode
    ascii_host: str  # the same in punycode, as DNS and certificates carry it
    suffix: str  # public suffix (ICANN or private)
    registered: str  # registered domain: one label left of the suffix, or the host for an IP
    subdomain: str  # labels left of the registered domain
    private_suffix: bool  # the suffix is a provider's (free hosting, dynamic DNS), not a TLD
    is_ip: bool
    idn: bool  # at least one label was punycode or non-ASCII

    @property
    def tld(self) -> str:
        return self.suffix.rsplit(".", 1)[-1]


class Target(NamedTuple):
    """One input line parsed once: the host and what followed it in a URL."""

    raw: str
    host: Host
    path: str  # path plus query, lower-case; "" for a bare domain
    userinfo: str = ""  # what stood before `@` in the URL, lower-case: not visited, but read as the host


class _SuffixList:
    """The PSL rules as look-up tables (rules and wildcards to whether they are private, the
    exceptions, every rule's tails); a lookup walks a host's labels from the right."""

    def __init__(self, text: str) -> None:
        self.rules: dict[str, bool] = {}  # suffix -> is private
        self.wildcards: dict[str, bool] = {}  # "*.ck" stored as "ck"
        self.exceptions: set[str] = set()
        private = False
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("// ===BEGIN PRIVATE DOMAINS"):
                private = True
            if not line or line.startswith("//"):
                continue
            rule = line.split()[0].lower()
            if not rule.isascii():  # looked up in punycode, as hosts are (`公司.香港`)
                rule = ".".join(_encode_label(label) for label in rule.split("."))
            if rule.startswith("!"):
                self.exceptions.add(rule[1:])
            elif rule.startswith("*."):
                self.wildcards[rule[2:]] = private
            else:
                self.rules[rule] = private
        # Every right-hand part of a rule: a walk can stop as soon as it leaves this set.
        self.tails = {r.split(".", i)[-1] for r in (*self.rules, *self.wildcards, *self.exceptions) for i in range(r.count(".") + 1)}

    def suffix(self, labels: list[str]) -> tuple[int, bool]:
        """Number of labels in the longest matching suffix, and whether it is private."""
        best, private = 1, False  # unknown TLDs count as one-label suffixes (PSL's "*" rule)
        parent = ""
        for n in range(1, len(labels) + 1):
            candidate = labels[-n] + "." + parent if parent else labels[-n]
            if candidate in self.exceptions:
                return n - 1, private
            if candidate in self.rules:
                best, private = n, self.rules[candidate]
            if parent in self.wildcards:
                best, private = n, self.wildcards[parent]
            if candidate not in self.tails:
                break
            parent = candidate
        return best, private


_PSL: _SuffixList | None = None


def _load_suffix_list() -> _SuffixList:
    """Parse the bundled list once, on first use (a module global: this is the hot path)."""
    global _PSL
    _PSL = _SuffixList(Path(publicsuffixlist.PSLFILE).read_text(encoding="utf-8"))
    return _PSL


def _decode_label(label: str) -> str:
    if label.startswith("xn--"):
        try:
            return label.encode("ascii").decode("idna")
        except UnicodeError:
            return label  # malformed punycode stays as is: still a label we can score
    return label


def _encode_label(label: str) -> str:
    if label.isascii():
        return label
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:
        return "xn--" + label.encode("punycode").decode("ascii")


def ascii_domain(domain: str) -> str:
    """A domain, or a provider customer's `host/folder`, with its host in punycode (A-labels), as
    DNS, registrars and certificates name it: a takedown naming only `ѕbisec.com` names no
    domain a registrar can look up."""
    host, slash, folder = domain.partition("/")
    if host.isascii():
        return domain
    return ".".join(_encode_label(label) for label in host.split(".")) + slash + folder


def _is_ipv6(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 6
    except ValueError:
        return False


def _is_ip(host: str) -> bool:
    if ":" in host:
        return True
    if not host[-1:].isdigit():  # no TLD ends in a digit
        return False
    try:
        ipaddress.IPv4Address(host)  # `999.1.1.1` is none
    except ValueError:
        return False
    return True


def is_host_name(host: str) -> bool:
    """Whether a lower-case text is a host name: labels of letters (any script, for IDN), digits,
    hyphens and underscores between dots, each label starting and ending with no hyphen or
    underscore, or an IP address. Quotes, commas, tabs, `@` or NUL are no host: scored as one,
    they would be shared and sent for takedown as written."""
    if host.isascii():
        return _ASCII_HOST.fullmatch(host) is not None or _is_ipv6(host)
    # An internationalised label is one IDNA takes (`ヤマダ・デンキ` too: its middle dot is no
    # letter); its ASCII characters are still letters, digits, hyphens and underscores only.
    return all(0 < len(label) <= 63 and all(c.isalnum() or c in "-_" for c in label if c.isascii())
               and label[0] not in "-_" and label[-1] not in "-_" and _idna_label(label)
               for label in host.removesuffix(".").split("."))


def _idna_label(label: str) -> bool:
    try:
        label.encode("idna")
    except UnicodeError:
        return False
    return True


def split_host(host: str) -> Host:
    """Split a host name (Unicode or punycode) into its PSL parts."""
    host = host.strip().strip(".").lower()
    if _is_ip(host):
        return Host(host, host, "", host, "", False, True, False)
    labels = host.split(".") if ".." not in host else [label for label in host.split(".") if label]
    if host.isascii() and "xn--" not in host:  # the common case: nothing to decode or encode
        unicode_labels = ascii_labels = labels
    else:
        unicode_labels = [_decode_label(label) for label in labels]
        ascii_labels = [_encode_label(label) for label in unicode_labels]
    idn = unicode_labels is not ascii_labels and any(not label.isascii() for label in unicode_labels)
    n, private = (_PSL or _load_suffix_list()).suffix(ascii_labels)
    n = min(n, len(labels))
    cut = max(len(labels) - n - 1, 0)
    return Host(
        host=".".join(unicode_labels),
        ascii_host=".".join(ascii_labels),
        suffix=".".join(unicode_labels[len(labels) - n :]),
        registered=".".join(unicode_labels[cut:]),
        subdomain=".".join(unicode_labels[:cut]),
        private_suffix=private,
        is_ip=False,
        idn=idn,
    )


def refanged(text: str) -> str:
    """`text` with the usual defanging undone (`hxxps://evil[.]com` is `https://evil.com`)."""
    if "[" not in text and "(" not in text and "{" not in text and text[1:3] not in ("xx", "XX", "**"):
        return text  # a certificate stream's millions of names a day pass here
    return _DEFANGED.sub(lambda m: f"http{m.group(1)}" if m.group(0)[:1] in "hH" else _REFANG[m.group(0).lower()],
                         text)


def parse_target(raw: str) -> Target:
    """Parse a domain or URL as a user or a certificate stream gives it, defanged or not.

    Raises ValueError when no host can be found, so callers can reject the line.
    """
    text = refanged(raw.strip())
    if text.isascii() and not _URL_CHARS.search(text):  # a bare domain, as streams carry them
        return Target(raw=raw, host=split_host(_checked_host(text.lstrip("*."), raw)), path="")
    if not text.isascii() and undecodable(text):
        raise ValueError(f"not valid UTF-8: {raw[:80]!r}")
    if _CONTROL.search(text):
        raise ValueError(f"a control character (tab, NUL…) inside {raw[:80]!r}")
    if ":" in text and "/" not in text and _is_ipv6(text):  # a bare IPv6 address, not host:port
        return Target(raw=raw, host=split_host(text.lower()), path="")
    # A browser reads `\` as `/` in a web URL: `http://evil.com\@www.sbisec.co.jp/` goes to evil.com.
    try:
        parts = urlsplit(_with_authority(text).replace("\\", "/"))  # refuses a bad `[IPv6]` host
        host, _ = parts.hostname, parts.port  # a port past 65535 or not a number is no URL either
    except ValueError as exc:
        raise ValueError(f"unparseable URL {raw!r}: {exc}") from None
    host = _checked_host(host or "", raw)
    path = parts.path + ("?" + parts.query if parts.query else "")
    userinfo = parts.netloc.rpartition("@")[0].lower()
    return Target(raw=raw, host=split_host(host), path="" if path == "/" else path.lower(), userinfo=userinfo)


def _with_authority(text: str) -> str:
    """The URL as `scheme://host…`, the host where a browser finds it: after a web scheme and any
    slashes, after the `//` of a scheme-relative link, or at the start of a bare `host/path`
    (certificate wildcards dropped: `*.x.com` names the same registrant)."""
    start = _WEB_START.match(text)
    if start is not None:
        return f"{start.group(1) or 'https'}://{text[start.end():]}"
    return text if "://" in text else "https://" + text.lstrip("*.")


def web_url(raw: str, host: str) -> str:
    """The URL of an input as a browser visits it: a bare domain as `https://host/`, anything
    more as written from its scheme on (`evil.top/sbisec/login`, a domain field carrying a path,
    as `https://evil.top/sbisec/login`: the path may be what alerted)."""
    text = refanged(raw.strip())
    return _with_authority(text) if _URL_CHARS.search(text) else f"https://{host}/"


def path_as_written(raw: str) -> str:
    """The path of an input with its case kept (`Target.path` is lower-cased for matching): a
    shortener's code is case-sensitive, `bit.ly/3xYz` and `bit.ly/3xyz` are two links."""
    return urlsplit(_with_authority(refanged(raw.strip())).replace("\\", "/")).path


def undecodable(text: str) -> bool:
    """Whether the line held bytes that are not UTF-8 (read with errors="surrogateescape")."""
    return _UNDECODABLE.search(text) is not None


def _not_a_host(raw: str) -> str:
    return (f"no host name of at most {MAX_HOST} characters (letters, digits and hyphens between dots, "
            f"no label starting or ending with a hyphen) in {raw[:80]!r}")


def _checked_host(host: str, raw: str) -> str:
    """The host a browser visits, or ValueError: the same check for a bare domain and a URL's host,
    so `127.1` and `http://127.1/` are one address."""
    host = _as_browsers_read(host)
    if not host or len(host) > MAX_HOST or not is_host_name(host):
        raise ValueError(_not_a_host(raw))
    return host


def _as_browsers_read(host: str) -> str:
    """The host a browser would visit: percent-decoded, full-width letters folded (NFKC),
    ideographic full stops as dots, soft hyphens and zero-width characters dropped, a host ending
    in a number read as an IPv4 address. Otherwise `ＳＢＩＳＥＣ.co.jp` or
    `sbisec.co.jp。evil.com` would be judged as some other host."""
    if "%" in host:
        host = unquote(host)
    host = host.lower() if host.isascii() else unicodedata.normalize("NFKC", host).translate(_HOST_FOLD).lower()
    return _numeric_ipv4(host) if _ends_in_number(host) else host


def _ends_in_number(host: str) -> bool:
    """Whether the last label is a number (decimal or 0x hex): a browser then reads the host as
    an IPv4 address or refuses it; no TLD is a number (WHATWG URL, "ends in a number")."""
    last = host.removesuffix(".").rpartition(".")[2]
    return last.isdigit() or (last[:2] == "0x" and _HEX_NUMBER.fullmatch(last) is not None)


def _numeric_ipv4(host: str) -> str:
    """The dotted address a browser reads in a host whose last label is a number (the WHATWG URL
    rules): `3232235777`, `0xc0a80101` and `0300.0250.1.1` all visit 192.168.1.1, and phishing
    links spell addresses so to pass as something else. ValueError when it is no address
    (`1.2.3.4.5`, `999.1.1.1`): a browser refuses it, and as a name its `4.5` would be scored."""
    value = _ipv4_value(host.removesuffix(".").split("."))
    if value is None:
        raise ValueError(f"{host[:80]!r} ends in a number but is no IPv4 address")
    return str(ipaddress.IPv4Address(value))


def _ipv4_value(labels: list[str]) -> int | None:
    """The address of one to four numbers (decimal, 0x hex, 0-led octal), the last filling the
    bytes left; None when the labels are no such address."""
    if not 1 <= len(labels) <= 4 or not all(labels):
        return None
    numbers = []
    for label in labels:
        base, digits = (16, label[2:]) if label[:2] == "0x" else (8, label[1:]) if label[:1] == "0" and len(label) > 1 \
            else (10, label)
        try:
            numbers.append(int(digits or "0", base))
        except ValueError:
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    return sum(n << 8 * (3 - i) for i, n in enumerate(head)) + last
