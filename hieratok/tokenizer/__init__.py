"""The tokenizer: the HieraTok / ViTok KL model and its training task.

    config.py        model: section               model.py       patch embed -> encoder -> latent -> decoder
    layout.py        which blocks see which scales stack.py       a transformer stack (finest or multi-scale)
    pyramid.py       the multi-scale token pyramid posterior.py   the diagonal Gaussian bottleneck
    info.py          `hieratok model-info`         task.py        the training-engine Task (L1+MSE+KL+LPIPS+GAN)
    loss_config.py   loss: section                 lpips.py       LPIPS-VGG, loss and metric
    discriminator.py PatchGAN + hinge losses

Nothing is imported here, so `hieratok.tokenizer.config` loads without torch (the CLI's config path).
"""
