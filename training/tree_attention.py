"""Tree attention: decode-time attention over a KV cache sharded along the sequence (Shyam et al., 2024).

Each rank holds a contiguous or strided slice of the cached keys/values. Softmax attention decomposes
exactly over key subsets: with each rank's local output o_r (softmax over its own keys) and log-sum-exp
l_r, the global output is sum_r exp(l_r - M) o_r / sum_r exp(l_r - M), M = max_r l_r. So one all-reduce
(max) of l, then one all-reduce (sum) of the packed [numerator | denominator] give the answer, and the
collective library runs those reductions as trees: O(log ranks) communication steps per token instead
of the ranks - 1 hops of ring attention.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q (b, h, s_q, d) over local keys/values (b, h_kv, s_k, d), no mask (all keys are past).

    Returns the locally normalized output (b, h, s_q, d) in fp32 and the log-sum-exp (b, h, s_q); an empty
    shard gives zeros and -inf, which contribute nothing to the combination.
    """
    batch, heads, queries, dim = q.shape
    if k.shape[2] == 0:
        return (torch.zeros(batch, heads, queries, v.shape[-1], dtype=torch.float32, device=q.device),
                torch.full((batch, heads, queries), float("-inf"), device=q.device))
    group = heads // k.shape[1]
    scale = 1.0 / math.sqrt(dim) if scale is None else scale
    qg = q.float().reshape(batch, k.shape[1], group * queries, dim)  # query heads of one kv head together
    scores = (qg @ k.float().transpose(-1, -2)) * scale
    lse = torch.logsumexp(scores, dim=-1)
    out = torch.exp(scores - lse[..., None]) @ v.float()
    return out.view(batch, heads, queries, -1), lse.view(batch, heads, queries)


def tree_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group: dist.ProcessGroup | None = None,
                   scale: float | None = None) -> torch.Tensor:
    """Exact attention of q (identical on every rank) over the union of all ranks' k/v shards."""
    out, lse = local_attention(q, k, v, scale)
    global_max = lse.clone()
    dist.all_reduce(global_max, op=dist.ReduceOp.MAX, group=group)
    weight = torch.exp(lse - global_max)  # 0 for an empty shard
    packed = torch.cat([out * weight[..., None], weight[..., None]], dim=-1)
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
    return (packed[..., :-1] / packed[..., -1:]).to(q.dtype)


class ShardedKVCache:
    """A decode-time KV cache spread over ranks: token t lives on rank t % world, so shards stay balanced."""

    def __init__(self, group: dist.ProcessGroup | None = None):
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.keys: torch.Tensor | None = None
        self.values: torch.Tensor | None = None
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Add the keys/values (b, h_kv, n, d) of the next n tokens (every rank passes the same tensors)."""
        positions = torch.arange(self.length, self.length + k.shape[2], device=k.device)
        mine = positions % self.world == self.rank
        k, v = k[:, :, mine], v[:, :, mine]
        self.keys = k if self.keys is None else torch.cat([self.keys, k], dim=2)
        self.values = v if self.values is None else torch.cat([self.values, v], dim=2)
        self.length += int(positions.numel())

    def attend(self, q: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        if self.keys is None:
            raise RuntimeError("ShardedKVCache.attend before any append")
        return tree_attention(q, self.keys, self.values, self.group, scale)
