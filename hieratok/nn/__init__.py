"""Network pieces the tokenizer and the generator share.

    attention.py   the scale-causal mask and the kernels that apply it (SDPA, prefix-SDPA, FlexAttention)
    layers.py      the pre-norm ViT block (RMSNorm, attention with 2D RoPE, SwiGLU) and keyed init
    rope.py        2D rotary embedding at fractional (cell-centre) positions
    pretrained.py  save_pretrained / from_pretrained: safetensors weights + config.json
    weights_files.py  finding the weights of networks we do not train (Inception, VGG16, LPIPS heads)
"""
