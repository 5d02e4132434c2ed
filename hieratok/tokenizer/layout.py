"""Which tokens each block of a tokenizer config sees: the block layout, from the config alone.

The encoder runs its LAST `hiera_depth` blocks on the multi-scale sequence, the decoder its FIRST.
The last multi-scale block of a stack computes only the finest queries (nothing reads the coarse
outputs), and those see every key, so the scale-causal mask acts in the other multi-scale blocks
only. With `latent: all` the encoder keeps every scale as the latent, and its last block masks too.
"""
from __future__ import annotations

GRID = "grid"  # the finest token grid only
SCALE_CAUSAL = "scale-causal"  # all scales; scale k attends to the scales <= k
FULL = "full"  # all scales, every token sees every token (the control)
FINEST_QUERIES = "finest-queries"  # all scales as keys, the finest tokens as queries: no mask to act
REGISTERS = "registers"  # the control: learned register tokens + the grid, full attention


def block_layout(m) -> dict[str, list[str]]:
    """{"encoder": [kind of block 0, ...], "decoder": [...]} for a tokenizer model config."""
    multi_kind = REGISTERS if m.registers else SCALE_CAUSAL if m.scale_attention == "causal" else FULL
    multi = len(m.scales) > 1 or m.registers > 0
    enc, dec = m.encoder, m.decoder
    encoder = [GRID] * enc.depth
    decoder = [GRID] * dec.depth
    if multi:
        for i in range(enc.depth - enc.hiera_depth, enc.depth):
            encoder[i] = multi_kind
        if enc.hiera_depth > 0 and m.latent != "all":
            encoder[-1] = FINEST_QUERIES
        for i in range(dec.hiera_depth):
            decoder[i] = multi_kind
        if dec.hiera_depth > 0:
            decoder[dec.hiera_depth - 1] = FINEST_QUERIES
    return {"encoder": encoder, "decoder": decoder}


def masked_blocks(m) -> dict[str, int]:
    """Per stack, how many blocks the scale-causal mask acts in."""
    return {name: kinds.count(SCALE_CAUSAL) for name, kinds in block_layout(m).items()}


def describe(m) -> dict[str, str]:
    """One line a stack, runs of equal blocks merged: "0-3 grid 16x16; 4 scale-causal over 1,2,4,8,16; ..."."""
    scales = ",".join(str(s) for s in m.scales)
    label = {GRID: f"grid {m.scales[-1]}x{m.scales[-1]}", SCALE_CAUSAL: f"scale-causal over {scales}",
             FULL: f"full attention over {scales}", FINEST_QUERIES: f"finest queries over {scales}",
             REGISTERS: f"{m.registers} registers + grid {m.scales[-1]}x{m.scales[-1]}"}
    if m.registers:
        label[FINEST_QUERIES] = f"grid queries over {m.registers} registers + grid"
    out = {}
    for name, kinds in block_layout(m).items():
        runs, start = [], 0
        for i in range(1, len(kinds) + 1):
            if i == len(kinds) or kinds[i] != kinds[start]:
                span = f"{start}" if i - 1 == start else f"{start}-{i - 1}"
                runs.append(f"{span} {label[kinds[start]]}")
                start = i
        out[name] = "; ".join(runs)
    return out
