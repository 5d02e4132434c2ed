"""FSDP2: `fully_shard` on every block, then on the root; bf16 parameters with fp32 reductions."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from hieratok.train.backends.torch_dcp import TorchBackend


class FSDPBackend(TorchBackend):
    def _wrap(self, model: nn.Module) -> nn.Module:
        model.to(self.info.device)
        mesh = init_device_mesh(self.info.device.type, (self.info.world_size,))
        mp = None
        if self.cfg.dist.mixed_precision == "bf16":
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        kwargs = {"mesh": mesh} | ({"mp_policy": mp} if mp is not None else {})
        for block in self.task.block_modules(model):
            fully_shard(block, **kwargs)
        fully_shard(model, **kwargs)
        return model

    def accumulate(self, last: bool):
        """Reduce-scatter gradients only on the last micro-batch of an optimizer step."""
        self.wrapped.set_requires_gradient_sync(last)
        return super().accumulate(last)
