"""Document boundaries inside packed sequences.

A packed training row holds several documents back to back. `segment_ids` (batch, length) says which
document each position belongs to; every layer that mixes positions (attention masks, Mamba2's conv and
state, CCA's convolutions and value shift) must stop at those boundaries, or one document would leak
into the next. Helpers here give all layers the same definition of "same document".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize_segments(segment_ids: torch.Tensor | None) -> torch.Tensor | None:
    """Renumber ids into a non-decreasing run index (0, 0, 1, 1, 1, 2 ...).

    Any labelling works as input (only changes between neighbours matter); the chunked SSD scan relies on
    ids being non-decreasing so that "equal ids at both ends" means "same document all the way".
    """
    if segment_ids is None:
        return None
    if segment_ids.dim() != 2:
        raise ValueError(f"segment_ids must be (batch, length), got shape {tuple(segment_ids.shape)}")
    change = (segment_ids[:, 1:] != segment_ids[:, :-1]).to(torch.int32)
    return F.pad(change, (1, 0)).cumsum(dim=1, dtype=torch.int32)


def shift_right(x: torch.Tensor, n: int, segments: torch.Tensor | None = None) -> torch.Tensor:
    """`y[:, t] = x[:, t - n]`, zero where `t < n` or where position `t - n` lies in another document.

    x is (batch, length, ...); segments (batch, length) normalized ids or None.
    """
    if n == 0:
        return x
    length = x.shape[1]
    y = torch.zeros_like(x)
    if n >= length:
        return y
    y[:, n:] = x[:, :-n]
    if segments is not None:
        same = torch.zeros_like(segments, dtype=torch.bool)
        same[:, n:] = segments[:, n:] == segments[:, :-n]
        y = y * same.view(*same.shape, *([1] * (x.dim() - 2))).to(x.dtype)
    return y


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    groups: int,
    segments: torch.Tensor | None = None,
) -> torch.Tensor:
    """Causal (left-padded) grouped conv over the sequence of x (batch, length, channels).

    weight is a Conv1d weight (channels, channels // groups, kernel). Without segments this is one
    `F.conv1d`; with segments each tap reads a document-masked shifted copy, so no output mixes inputs
    from two documents.
    """
    kernel = weight.shape[-1]
    if segments is None:
        out = F.conv1d(F.pad(x.transpose(1, 2), (kernel - 1, 0)), weight, bias, groups=groups)
        return out.transpose(1, 2)
    depthwise = weight.shape[1] == 1
    out = None
    for lag in range(kernel):
        shifted = shift_right(x, lag, segments)
        if depthwise:  # a per-channel scale: cheaper than a kernel-1 conv, forward and backward
            term = shifted * weight[:, 0, kernel - 1 - lag]
        else:
            tap = weight[:, :, kernel - 1 - lag : kernel - lag]
            term = F.conv1d(shifted.transpose(1, 2), tap, None, groups=groups).transpose(1, 2)
        out = term if out is None else out + term
    return out if bias is None else out + bias


def document_causal_mask(segments: torch.Tensor) -> torch.Tensor:
    """Boolean SDPA mask (batch, 1, length, length): True where query t may attend key s."""
    length = segments.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=segments.device).tril()
    same = segments[:, :, None] == segments[:, None, :]
    return (same & causal)[:, None]
