"""The Hub dataset card (README.md) of a published run, laid out like Zyphra's Zyda-2 card.

YAML header: license, one `configs` entry per component (`data/<component>/*.parquet`) plus
`default` (every component). Body: the counts table (documents, tokens, text bytes), the mixture
weights with the sampling probabilities that realize them, the recipe, and how to load it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

DATA_DIR = "data"
TOKENS_DIR = "tokens"
SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                   (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
                   (10_000_000_000, "1B<n<10B")]


@dataclass(frozen=True)
class Component:
    """One published component (a recipe source) and what the card says about it."""

    name: str
    stage: str
    """The recipe stage whose documents are published for it (its final curated text)."""
    documents: int
    text_bytes: int
    files: int
    parquet_bytes: int
    tokens: int | None
    weight: float
    upstream: str
    license: str


def size_category(documents: int) -> str:
    for limit, label in SIZE_CATEGORIES:
        if documents < limit:
            return label
    return "n>10B"


def data_glob(component: str | None = None) -> str:
    return f"{DATA_DIR}/{component}/*.parquet" if component else f"{DATA_DIR}/*/*.parquet"


def sampling_probabilities(components: list[Component]) -> dict[str, float]:
    """Per-document probabilities for `datasets.interleave_datasets` giving each component its
    token share weight x tokens / sum(weight x tokens): p ~ weight x documents."""
    raw = {c.name: c.weight * c.documents for c in components}
    total = sum(raw.values())
    return {name: value / total if total else 0.0 for name, value in raw.items()}


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:,.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return str(n)


def header(components: list[Component], license_id: str, pretty_name: str) -> dict[str, Any]:
    published = [c for c in components if c.files]
    configs = [{"config_name": "default", "data_files": [{"split": "train", "path": data_glob()}]}]
    configs += [{"config_name": c.name, "data_files": [{"split": "train", "path": data_glob(c.name)}]}
                for c in published]
    return {"license": license_id, "pretty_name": pretty_name, "language": ["en"],
            "task_categories": ["text-generation"],
            "size_categories": [size_category(sum(c.documents for c in components))], "configs": configs}


def render_card(repo_id: str, components: list[Component], recipe: dict[str, Any], recipe_hash: str,
                license_id: str, tokens_published: bool, tokenizer: dict[str, Any] | None) -> str:
    """The whole README.md: YAML front matter and the Markdown body."""
    pretty_name = recipe.get("name", repo_id.split("/")[-1])
    front = yaml.safe_dump(header(components, license_id, pretty_name), sort_keys=False, allow_unicode=True)
    probabilities = sampling_probabilities(components)
    known_tokens = all(c.tokens is not None for c in components)
    total_weighted = sum(c.weight * (c.tokens or 0) for c in components)
    lines = [f"---\n{front}---", "", f"# {pretty_name}", ""]
    if recipe.get("description"):
        lines += [" ".join(str(recipe["description"]).split()), ""]
    lines += [f"Built with the `zyda` pipeline from recipe `{recipe.get('name')}` (hash `{recipe_hash[:16]}`): each "
              f"component is the final curated text of its source, one folder per component under `{DATA_DIR}/`.", "",
              "## Components", "",
              "| component | documents | tokens | text bytes | files | Parquet size | weight | token share |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for c in components:
        share = f"{c.weight * c.tokens / total_weighted:.2%}" if known_tokens and total_weighted else "-"
        tokens = f"{c.tokens:,}" if c.tokens is not None else "-"
        lines.append(f"| {c.name} | {c.documents:,} | {tokens} | {_human(c.text_bytes)} | {c.files} | "
                     f"{_human(c.parquet_bytes)} | {c.weight:g} | {share} |")
    lines.append(f"| **total** | {sum(c.documents for c in components):,} | "
                 + (f"{sum(c.tokens or 0 for c in components):,}" if known_tokens else "-")
                 + f" | {_human(sum(c.text_bytes for c in components))} | {sum(c.files for c in components)} | "
                 f"{_human(sum(c.parquet_bytes for c in components))} | | |")
    if tokenizer:
        lines += ["", f"Tokens are counted with `{tokenizer['name']}` (vocabulary {tokenizer['vocab_size']:,}), "
                      "one EOS after every document."]
    lines += ["", "### Sources", ""]
    lines += [f"- **{c.name}**: {c.upstream} (license `{c.license}`), published from stage `{c.stage}`"
              for c in components]
    lines += ["", "## Mixture weights", "",
              "The recipe's training weights multiply each component's tokens: a component's share of the "
              "training mix is weight x tokens / sum(weight x tokens). Sampling documents with the "
              "probabilities below (proportional to weight x documents) realizes those shares:", "",
              "| component | weight | document sampling probability |", "|---|---:|---:|"]
    lines += [f"| {c.name} | {c.weight:g} | {probabilities[c.name]:.4f} |" for c in components]
    names = [c.name for c in components if c.files]
    lines += ["", "## How to load", "", "```python", "from datasets import load_dataset, interleave_datasets", "",
              f'everything = load_dataset("{repo_id}", split="train", streaming=True)']
    if names:
        lines += [f'one = load_dataset("{repo_id}", "{names[0]}", split="train", streaming=True)', "",
                  "# the training mixture", f"names = {names!r}",
                  f"parts = [load_dataset(\"{repo_id}\", n, split=\"train\", streaming=True) for n in names]",
                  f"mix = interleave_datasets(parts, probabilities={[round(probabilities[n], 6) for n in names]!r}, "
                  "seed=42, stopping_strategy=\"all_exhausted\")"]
    lines += ["```", ""]
    if tokens_published and tokenizer:
        lines += ["## Token shards", "",
                  f"`{TOKENS_DIR}/<component>/*.parquet` hold the same documents tokenized with `{tokenizer['name']}` "
                  "(columns `id`, `source`, `input_ids`, `num_tokens`; EOS ends every document); "
                  f"`{TOKENS_DIR}/manifest.json` lists every shard with its sha256, tokens per component, the "
                  "tokenizer and the mixture. They are not part of the `configs` above.", ""]
    lines += ["## Recipe", "", "```yaml", yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
    return "\n".join(lines)
