"""The latent generator: a LightningDiT-style flow-matching transformer on normalised tokenizer latents.

    config.py         model: / loss: sections          model.py, blocks.py   the network
    flow.py           training objective (rectified flow) sampler.py         Euler / Heun + guidance
    normalization.py  per-channel latent stats          task.py               the training-engine Task
    tokenizer_ref.py  which tokenizer, hash-checked     latent_cache.py       `hieratok encode`
    sample_run.py     `hieratok sample`                 info.py               `hieratok model-info`
    images.py         export + tokenizer + stats -> uint8 images (`hieratok sample`, `Generator.sample`)
"""
