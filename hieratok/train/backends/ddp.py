"""DistributedDataParallel (a plain module at world size 1)."""
from __future__ import annotations

import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from hieratok.train.backends.torch_dcp import TorchBackend


class DDPBackend(TorchBackend):
    def _wrap(self, model: nn.Module) -> nn.Module:
        model.to(self.info.device)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            return DistributedDataParallel(model, device_ids=ids)
        return model

    def accumulate(self, last: bool):
        """No gradient all-reduce until the last micro-batch of an optimizer step."""
        if isinstance(self.wrapped, DistributedDataParallel) and not last:
            return self.wrapped.no_sync()
        return super().accumulate(last)
