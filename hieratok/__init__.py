"""HieraTok: multi-scale ViT tokenizers (and their latent generators), trained at scale.

`Tokenizer`, `Generator` and `scale_causal_mask` import lazily, so the `hieratok` CLI starts without torch.
"""
__version__ = "0.1.0"
__all__ = ["Tokenizer", "Generator", "scale_causal_mask", "__version__"]


def __getattr__(name: str):
    if name == "Tokenizer":
        from hieratok.tokenizer.model import Tokenizer

        return Tokenizer
    if name == "Generator":
        from hieratok.generator.model import Generator

        return Generator
    if name == "scale_causal_mask":
        from hieratok.nn.attention import scale_causal_mask

        return scale_causal_mask
    raise AttributeError(f"module 'hieratok' has no attribute {name!r}")
