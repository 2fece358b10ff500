"""Tree attention over a sequence-sharded KV cache equals full attention, on 2 and 4 gloo processes."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from tests.procs import free_port
from training.tree_attention import ShardedKVCache, local_attention, tree_attention


def full_attention(q, k, v):
    """Reference: plain softmax attention of q over all keys (GQA by repeating kv heads), in float64."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = q.double() @ k.double().transpose(-1, -2) / q.shape[-1] ** 0.5
    return (scores.softmax(-1) @ v.double()).float()


def tensors(seed: int, heads: int, kv_heads: int, queries: int, keys: int):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(2, heads, queries, 16, generator=g)
    k = torch.randn(2, kv_heads, keys, 16, generator=g) * 2  # peaky softmax: the max rescaling matters
    v = torch.randn(2, kv_heads, keys, 16, generator=g)
    return q, k, v


def _worker(rank: int, world: int, port: int) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        for seed, (heads, kv_heads, queries, keys) in enumerate([(4, 4, 1, 37), (8, 2, 1, 100), (4, 2, 3, 9), (4, 4, 1, 3)]):
            q, k, v = tensors(seed, heads, kv_heads, queries, keys)
            # uneven contiguous shards; with 3 keys on 4 ranks one shard is empty
            shard = torch.tensor_split(torch.arange(keys), world)[rank]
            out = tree_attention(q, k[:, :, shard], v[:, :, shard])
            torch.testing.assert_close(out, full_attention(q, k, v), atol=1e-5, rtol=1e-5)
        # decoding: one token at a time into a cache spread round-robin over the ranks
        q, k, v = tensors(99, 4, 2, 1, 12)
        cache = ShardedKVCache()
        for t in range(12):
            cache.append(k[:, :, t : t + 1], v[:, :, t : t + 1])
            out = cache.attend(q)
            torch.testing.assert_close(out, full_attention(q, k[:, :, : t + 1], v[:, :, : t + 1]), atol=1e-5, rtol=1e-5)
        assert cache.keys.shape[2] == len(range(rank, 12, world))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("world", [2, 4])
def test_tree_attention_equals_full_attention(world):
    mp.start_processes(_worker, args=(world, free_port()), nprocs=world, start_method="fork")


def test_local_pieces_combine_to_the_full_softmax():
    q, k, v = tensors(7, 6, 3, 2, 50)
    pieces = [local_attention(q, k[:, :, s], v[:, :, s]) for s in torch.tensor_split(torch.arange(50), 5)]
    lse = torch.stack([p[1] for p in pieces])
    weights = torch.exp(lse - lse.max(0).values)
    combined = sum(w[..., None] * p[0] for w, p in zip(weights, pieces)) / weights.sum(0)[..., None]
    torch.testing.assert_close(combined, full_attention(q, k, v), atol=1e-5, rtol=1e-5)
    sdpa = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
    torch.testing.assert_close(local_attention(q, k, v)[0], sdpa, atol=1e-5, rtol=1e-5)
