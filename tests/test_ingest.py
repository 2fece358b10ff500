"""Ingest: every upstream format and schema, id rules, and each kind of bad input."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.manifest import load_recipe
from pipeline.readers import BadInputError
from pipeline.runner import run_recipe
from tests.upstream_fixtures import LAYOUT, dclm_record, dolma_record, json_lines, tree_bytes, write_recipe

INGEST = [{"id": "ingest", "type": "ingest"}]


def _ingest(tmp_path: Path, data_root: Path, name: str = "work", **kwargs) -> Path:
    recipe = load_recipe(write_recipe(tmp_path / f"recipe-{name}", data_root, INGEST))
    run_recipe(recipe, str(tmp_path / name), executor="local", **kwargs)
    return tmp_path / name


def _read(workdir: Path, folder: str) -> pa.Table:
    files = sorted((workdir / folder).rglob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else pa.table({})


def test_every_format_is_normalized_with_upstream_columns(tmp_path, upstream):
    workdir = _ingest(tmp_path, upstream)
    expected_meta = {
        "fwe3": {"id", "dump", "url", "date", "file_path", "language", "language_score", "token_count", "score",
                 "int_score"},
        "dclm": {"url", "warcinfo", "metadata", "language_id_whole_page_fasttext",
                 "fasttext_openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train_prob",
                 "bff_contained_ngram_count_before_dedupe", "previous_word_count"},
        "zyda": {"source", "filtering_features", "source_other"},
        "dolma_cc": {"id", "source", "added", "created", "metadata"},
    }
    for component, fields in expected_meta.items():
        table = _read(workdir, f"ingest/{component}")
        assert table.num_rows == 60, component
        assert table.column_names == ["id", "text", "source", "meta"]
        assert {f.name for f in table.schema.field("meta").type} == fields
        assert set(table["source"].to_pylist()) == {component}
    dclm = _read(workdir, "ingest/dclm").to_pylist()
    first = next(r for r in dclm if r["id"] == "dclm-00000-0000003")
    assert first["text"] == dclm_record(0, 3)["text"]
    assert orjson.loads(first["meta"]["metadata"]) == dclm_record(0, 3)["metadata"]
    assert first["meta"]["previous_word_count"] == 43
    dolma = {r["id"]: r for r in _read(workdir, "ingest/dolma_cc").to_pylist()}
    assert dolma["dolma_cc-00001-0000007"]["meta"]["id"] == dolma_record(1, 7)["id"]
    fwe = {r["id"]: r for r in _read(workdir, "ingest/fwe3").to_pylist()}
    assert fwe["fwe3-00001-0000002"]["meta"]["id"] == "<urn:uuid:0001-00000002>"


def test_ids_are_unique_and_stable_across_reruns(tmp_path, upstream):
    first = _ingest(tmp_path, upstream, "a")
    second = _ingest(tmp_path, upstream, "b")
    ids = pa.concat_tables([_read(first, f"ingest/{c}").select(["id"]) for c in ("fwe3", "dclm", "zyda", "dolma_cc")])
    assert ids.num_rows == 240
    assert len(set(ids["id"].to_pylist())) == 240
    assert tree_bytes(first, "ingest") == tree_bytes(second, "ingest")


def test_output_partitions_are_bounded(tmp_path, upstream):
    recipe = load_recipe(write_recipe(tmp_path / "r", upstream, INGEST,
                                      execution={"batch_size": 5, "target_part_bytes": 2048}))
    run_recipe(recipe, str(tmp_path / "w"), executor="local")
    parts = sorted((tmp_path / "w" / "ingest" / "fwe3").glob("*.parquet"))
    assert len(parts) > 4
    assert sum(pq.read_metadata(p).num_rows for p in parts) == 60
    assert all(pq.read_metadata(p).row_group(0).column(0).compression == "ZSTD" for p in parts)


def _break(upstream: Path, case: str) -> tuple[str, str]:
    """Damage one file; returns (its path, text the error must contain)."""
    dclm = upstream / LAYOUT["dclm-baseline-1.0"][0].format(i=1)
    dolma = upstream / LAYOUT["dolma-v1_7-cc"][0].format(i=1)
    fwe = upstream / LAYOUT["fineweb-edu-score-2"][0].format(i=1)
    records = [dclm_record(1, r) for r in range(30)]
    if case == "corrupt_parquet":
        fwe.write_bytes(fwe.read_bytes()[: len(fwe.read_bytes()) // 2])
        return str(fwe), "Parquet"
    if case == "truncated_zst":
        data = zstandard.ZstdCompressor().compress(json_lines(records))
        dclm.write_bytes(data[: len(data) // 2])
        return str(dclm), "truncated or corrupt"
    if case == "truncated_gz":
        data = gzip.compress(json_lines([dolma_record(1, r) for r in range(30)]))
        dolma.write_bytes(data[: len(data) // 2])
        return str(dolma), "truncated or corrupt"
    lines = json_lines(records).splitlines(keepends=True)
    if case == "malformed_json":
        lines[4] = b'{"text": "unterminated\n'
        dclm.write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines)))
        return str(dclm), "line 5: malformed JSON"
    if case == "invalid_utf8":
        lines[6] = b'{"text": "caf\xe9 au lait"}\n'
        dclm.write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines)))
        return str(dclm), "line 7: invalid UTF-8"
    if case == "missing_text":
        lines[2] = orjson.dumps({"url": "no text here"}) + b"\n"
        dclm.write_bytes(zstandard.ZstdCompressor().compress(b"".join(lines)))
        return str(dclm), "line 3: text field 'text' is missing"
    raise ValueError(case)


BAD_CASES = ["corrupt_parquet", "truncated_zst", "truncated_gz", "malformed_json", "invalid_utf8", "missing_text"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_fails_with_a_message_naming_the_file(tmp_path, upstream, case):
    path, needle = _break(upstream, case)
    with pytest.raises(BadInputError) as error:
        _ingest(tmp_path, upstream)
    assert path in str(error.value) and needle in str(error.value)


@pytest.mark.parametrize("case", BAD_CASES)
def test_skip_bad_records_keeps_the_rest_and_accounts_for_them(tmp_path, upstream, case):
    _break(upstream, case)
    workdir = _ingest(tmp_path, upstream, on_bad_record="skip")
    removed = _read(workdir, "removed/ingest")
    assert removed.num_rows >= 1
    assert all(r.startswith("bad_record:") for r in removed["reason"].to_pylist())
    marker = orjson.loads((workdir / "_state" / "ingest" / "_stage.json").read_bytes())
    for stats in marker["stats"].values():
        assert stats["docs_in"] == stats["docs_out"] + sum(stats["dropped"].values())
    if case in ("malformed_json", "invalid_utf8", "missing_text"):
        assert marker["stats"]["dclm"]["docs_out"] == 59
        assert removed.num_rows == 1


def test_null_text_in_parquet_is_a_bad_record(tmp_path, upstream):
    path = upstream / LAYOUT["zyda-1"][0].format(i=0)
    table = pq.read_table(path)
    texts = table["text"].to_pylist()
    texts[3] = None
    pq.write_table(table.set_column(0, "text", pa.array(texts, pa.string())), path)
    with pytest.raises(BadInputError, match="row 3: text is null"):
        _ingest(tmp_path, upstream)


def test_missing_field_and_empty_glob_are_named(tmp_path, upstream):
    path = upstream / LAYOUT["zyda-1"][0].format(i=0)
    pq.write_table(pq.read_table(path).drop_columns(["source_other"]), path)
    with pytest.raises(BadInputError, match=r"missing field\(s\) \['source_other'\]"):
        _ingest(tmp_path, upstream, "a")
    for f in (upstream / "dolma").rglob("*.json.gz"):
        f.unlink()
    with pytest.raises(BadInputError, match="no files match"):
        _ingest(tmp_path, upstream, "b")
