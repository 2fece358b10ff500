"""Spam and boilerplate documents that heuristic filters (Gopher, C4, FineWeb, Zyda-1 rules) should drop.

Each generator targets the signal of one family of rules: too few words, lorem ipsum, URL density,
markup density, character repetition, digit ratio, keyword repetition, non-alphanumeric ratio.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

SPAM_KIND = {"link_farm": "spam", "keyword_stuffing": "spam", "too_short": "boilerplate",
             "lorem_ipsum": "boilerplate", "markup_heavy": "boilerplate", "repeated_chars": "boilerplate",
             "number_table": "boilerplate", "symbol_garbage": "boilerplate"}
"""variant -> ground-truth kind"""
SPAM_LANGUAGE = {"lorem_ipsum": "la", "number_table": "zxx", "symbol_garbage": "zxx", "repeated_chars": "en"}

_PRODUCTS = ["cheap watches", "replica bags", "casino bonus", "payday loans", "weight loss pills",
             "free ringtones", "crypto signals", "discount viagra", "online pharmacy", "seo backlinks",
             "essay writing", "forex robot", "cheap flights", "car insurance quotes", "slot machines"]
_DOMAINS = ["best-deals", "cheap-offers", "top10-reviews", "free-download", "mega-sale", "win-now",
            "buy-online", "discount-store", "hot-picks", "bonus-casino"]
_TLDS = [".com", ".net", ".biz", ".info", ".xyz", ".top", ".ru"]
_SHORT = ["404 Not Found", "Page not found.", "Loading...", "Click here to continue", "Access denied",
          "This site requires JavaScript.", "Coming soon!", "Subscribe", "Log in to view this content.",
          "Error 503 Service Unavailable", "Please enable cookies.", "Redirecting..."]
_LOREM = ("Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore "
          "et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut "
          "aliquip ex ea commodo consequat. Duis aute irure dolor in reprehenderit in voluptate velit esse "
          "cillum dolore eu fugiat nulla pariatur.")
_TAGS = ["div", "span", "a", "li", "td", "p", "section", "nav", "script", "style"]


def _pick(options: list[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _url(rng: np.random.Generator, words: list[str]) -> str:
    scheme = "https://www." if rng.random() < 0.6 else ("http://" if rng.random() < 0.5 else "www.")
    path = "-".join(_pick(words, rng).lower() for _ in range(int(rng.integers(1, 4))))
    return f"{scheme}{_pick(_DOMAINS, rng)}{int(rng.integers(1, 999))}{_pick(_TLDS, rng)}/{path}"


def link_farm(rng: np.random.Generator, words: list[str]) -> str:
    lines = [f"{_pick(_PRODUCTS, rng).title()} - best links {int(rng.integers(2015, 2024))}"]
    for _ in range(int(rng.integers(15, 60))):
        lines.append(f"{_pick(_PRODUCTS, rng)} {_url(rng, words)}")
    return "\n".join(lines)


def keyword_stuffing(rng: np.random.Generator, words: list[str]) -> str:
    keys = [_pick(_PRODUCTS, rng) for _ in range(3)]
    parts = []
    for _ in range(int(rng.integers(40, 160))):
        parts.append(_pick(keys, rng) if rng.random() < 0.7 else _pick(["buy", "now", "best", "cheap", "free",
                                                                        "online", "price", "deal"], rng))
    return f"{keys[0].title()} {keys[1]} {keys[2]}\n" + " ".join(parts)


def too_short(rng: np.random.Generator, words: list[str]) -> str:
    return "\n".join(_pick(_SHORT, rng) for _ in range(int(rng.integers(1, 3))))


def lorem_ipsum(rng: np.random.Generator, words: list[str]) -> str:
    return "\n".join(_LOREM for _ in range(int(rng.integers(3, 12))))


def markup_heavy(rng: np.random.Generator, words: list[str]) -> str:
    out = []
    for _ in range(int(rng.integers(20, 70))):
        tag = _pick(_TAGS, rng)
        out.append(f'<{tag} class="{_pick(words, rng).lower()}-{int(rng.integers(100))}" '
                   f'id="x{int(rng.integers(10**6))}"><a href="{_url(rng, words)}">{_pick(words, rng)}</a></{tag}>')
    if rng.random() < 0.5:
        out.append("<script>var _gaq = _gaq || []; _gaq.push(['_trackPageview']);</script>")
    return "\n".join(out)


def repeated_chars(rng: np.random.Generator, words: list[str]) -> str:
    lines = []
    for _ in range(int(rng.integers(8, 30))):
        r = rng.random()
        if r < 0.4:
            lines.append(_pick(["=", "-", "*", "#", "~", "_"], rng) * int(rng.integers(20, 120)))
        elif r < 0.7:
            lines.append(_pick(["a", "o", "!", "z", "x"], rng) * int(rng.integers(15, 90)))
        else:
            lines.append(" ".join(_pick(words, rng) for _ in range(int(rng.integers(2, 6)))))
    return "\n".join(lines)


def number_table(rng: np.random.Generator, words: list[str]) -> str:
    cols = int(rng.integers(4, 9))
    rows = [" | ".join(f"{int(rng.integers(0, 10**int(rng.integers(2, 7))))}" for _ in range(cols))
            for _ in range(int(rng.integers(15, 60)))]
    return f"Table {int(rng.integers(1, 50))}\n" + "\n".join(rows)


def symbol_garbage(rng: np.random.Generator, words: list[str]) -> str:
    symbols = np.array(list("#@!$%^&*()[]{}<>|\\/~`+=-_;:,.?¤§¶•°±"))
    lines = []
    for _ in range(int(rng.integers(10, 40))):
        n = int(rng.integers(20, 100))
        chars = symbols[rng.integers(len(symbols), size=n)]
        lines.append("".join(chars.tolist()))
    return "\n".join(lines)


GENERATORS: dict[str, Callable[[np.random.Generator, list[str]], str]] = {
    "link_farm": link_farm, "keyword_stuffing": keyword_stuffing, "too_short": too_short,
    "lorem_ipsum": lorem_ipsum, "markup_heavy": markup_heavy, "repeated_chars": repeated_chars,
    "number_table": number_table, "symbol_garbage": symbol_garbage,
}
