from hieratok.models.attention import scale_causal_mask
from hieratok.models.tokenizer import Tokenizer

__all__ = ["Tokenizer", "scale_causal_mask"]
