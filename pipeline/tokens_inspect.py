"""`zyda tokens inspect WORKDIR`: counts from the token manifest and a few documents decoded back to text.

With `--verify`, every shard is re-read and checked against the manifest (sha256, documents,
tokens, EOS at the end of each document), so a person can trust a copy before training on it.
"""

from __future__ import annotations

import argparse
import hashlib
import posixpath
import sys
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.stage import StageError
from pipeline.tokenize import TOKEN_MANIFEST, TOKENS_DIR
from pipeline.tokenizer import LoadedTokenizer, TokenizerError, decode, load_tokenizer
from pipeline.workdir import Workdir


def read_token_manifest(workdir: Workdir) -> dict[str, Any]:
    path = workdir.path(TOKENS_DIR, TOKEN_MANIFEST)
    if not workdir.exists(path):
        raise StageError(f"{workdir.url} has no {TOKENS_DIR}/{TOKEN_MANIFEST}: run the recipe's tokenize stage "
                         f"first (zyda run RECIPE --workdir {workdir.url} --stages {TOKENS_DIR})")
    return workdir.read_json(path)


def manifest_tokenizer(manifest: dict[str, Any]) -> LoadedTokenizer:
    """The tokenizer named in the manifest; refused when its fingerprint differs from the recorded one."""
    info = manifest["tokenizer"]
    try:
        loaded = load_tokenizer(info["name"], bool(info.get("add_bos", False)))
    except TokenizerError as exc:
        raise StageError(f"cannot load the manifest's tokenizer to decode: {exc}") from None
    if loaded.info.fingerprint != info["fingerprint"]:
        raise StageError(f"tokenizer {info['name']!r} here ({loaded.info.origin}) is not the one the shards were "
                         f"made with (fingerprint {loaded.info.fingerprint[:12]} vs {info['fingerprint'][:12]})")
    return loaded


def verify_shards(workdir: Workdir, manifest: dict[str, Any]) -> list[str]:
    """Problems found by re-reading every shard; empty when all match the manifest."""
    problems = []
    eos = manifest["tokenizer"]["eos_id"]
    for shard in manifest["shards"]:
        path = workdir.path(shard["path"])
        if not workdir.exists(path):
            problems.append(f"{shard['path']}: missing")
            continue
        with workdir.fs.open(path, "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != shard["sha256"]:
            problems.append(f"{shard['path']}: sha256 differs from the manifest")
        table = pq.read_table(pa.BufferReader(data))
        lengths = pc.list_value_length(table["input_ids"])
        tokens = int(pc.sum(lengths).as_py() or 0)
        if table.num_rows != shard["documents"] or tokens != shard["tokens"]:
            problems.append(f"{shard['path']}: {table.num_rows} documents / {tokens} tokens, manifest says "
                            f"{shard['documents']} / {shard['tokens']}")
        if not pc.all(pc.equal(lengths, table["num_tokens"])).as_py():
            problems.append(f"{shard['path']}: num_tokens differs from len(input_ids)")
        if not _all_end_with(table["input_ids"].combine_chunks(), eos):
            problems.append(f"{shard['path']}: a document does not end with EOS ({eos})")
    return problems


def _all_end_with(lists: pa.ListArray, token: int) -> bool:
    offsets = lists.offsets.to_numpy()
    if len(lists) == 0:
        return True
    if (np.diff(offsets) == 0).any():
        return False
    return bool((lists.values.to_numpy()[offsets[1:] - 1] == token).all())


def _cmd_inspect(args: argparse.Namespace) -> int:
    workdir = Workdir(args.workdir, create=False)
    manifest = read_token_manifest(workdir)
    info = manifest["tokenizer"]
    print(f"tokenizer: {info['name']} ({info['origin']}), vocab {info['vocab_size']:,}, BOS {info['bos_id']}, "
          f"EOS {info['eos_id']}, sha256 {info['sha256'][:16]}")
    print(f"recipe: {manifest['recipe']['name']} ({manifest['recipe']['hash'][:16]})   "
          f"share = {manifest.get('share_definition', 'weight * tokens / sum(weight * tokens)')}")
    print(f"{'source':>10} {'documents':>12} {'tokens':>15} {'tok/doc':>8} {'shards':>6} {'weight':>7} {'share':>7}")
    for name, row in manifest["sources"].items():
        per_doc = row["tokens"] / row["documents"] if row["documents"] else 0
        print(f"{name:>10} {row['documents']:>12,} {row['tokens']:>15,} {per_doc:>8.1f} {row.get('shards', 0):>6} "
              f"{row['weight']:>7.2f} {row['share']:>7.2%}")
    totals = manifest.get("totals", {})
    print(f"{'total':>10} {totals.get('documents', 0):>12,} {totals.get('tokens', 0):>15,}")
    if args.documents:
        loaded = manifest_tokenizer(manifest)
        for name in manifest["sources"]:
            if args.source and name != args.source:
                continue
            shards = [s for s in manifest["shards"] if s["source"] == name]
            if not shards:
                continue
            table = pq.read_table(workdir.fs.open(workdir.path(shards[0]["path"]), "rb")).slice(0, args.documents)
            for row in table.to_pylist():
                text = decode(loaded, row["input_ids"])
                shown = text if len(text) <= args.chars else text[:args.chars] + " [...]"
                print(f"\n--- {row['id']} ({name}, {row['num_tokens']} tokens, "
                      f"{posixpath.basename(shards[0]['path'])}, last id {row['input_ids'][-1]})\n{shown}")
    if args.verify:
        problems = verify_shards(workdir, manifest)
        for problem in problems:
            print(f"BAD {problem}", file=sys.stderr)
        print(f"\nverified {len(manifest['shards'])} shards: "
              + ("all match the manifest" if not problems else f"{len(problems)} problems"))
        return 1 if problems else 0
    return 0


def register_cli(subparsers: argparse._SubParsersAction) -> None:
    tokens = subparsers.add_parser("tokens", help="inspect the token shards of a workdir")
    sub = tokens.add_subparsers(dest="tokens_command", required=True)
    inspect = sub.add_parser("inspect", help="counts per source and a few documents decoded back to text")
    inspect.add_argument("workdir")
    inspect.add_argument("--documents", type=int, default=2, help="documents decoded per source (0: none)")
    inspect.add_argument("--chars", type=int, default=400, help="characters shown per decoded document")
    inspect.add_argument("--source", default=None, help="decode documents of this source only")
    inspect.add_argument("--verify", action="store_true", help="re-read every shard and check it against the manifest")
    inspect.set_defaults(func=_cmd_inspect)
