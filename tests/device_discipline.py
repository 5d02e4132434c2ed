"""CPU tests cannot see device bugs, so this makes them visible: inside `strict_devices()`, a tensor
that project code makes without naming a device lands on the `meta` device instead of the CPU.
Dtypes too: a CPU convolution or matmul takes a bf16 input beside fp32 weights (or the reverse)
without complaint, where CUDA refuses ("Input type (float) and bias type (c10::BFloat16) should be
the same", seen on an H200 under DeepSpeed): here such a call outside autocast raises as it would there.

On a GPU such a tensor is a CPU tensor beside CUDA ones, and `torch.stack` / `cat` / most ops
refuse the mix ("Expected all tensors to be on the same device"). Here the same mix of `meta` and
`cpu` tensors raises the same way, so a CPU run of a train, sample or encode step fails exactly
where a CUDA run would. Only factory calls made from project files are moved: torch's own
internals (the optimizer's step counters, for instance) keep their defaults, as they do on a GPU.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

REPO = Path(__file__).resolve().parents[1]
PROJECT_DIRS = (REPO / "hieratok",)  # data_pipeline builds host batches on purpose: not checked

# factory functions whose device defaults to the CPU when none is named
FACTORIES = {
    torch.tensor, torch.as_tensor, torch.scalar_tensor, torch.zeros, torch.ones, torch.empty, torch.full,
    torch.arange, torch.linspace, torch.logspace, torch.eye, torch.rand, torch.randn, torch.randint,
    torch.randperm, torch.normal,
}


TORCH_DIR = str(Path(torch.__file__).resolve().parent)


def _caller() -> tuple[str, int]:
    """(file, line) of the first frame outside torch and this module: the code that asked for the tensor."""
    f = sys._getframe(2)
    while f is not None and (f.f_code.co_filename == __file__ or f.f_code.co_filename.startswith(TORCH_DIR)):
        f = f.f_back
    return (f.f_code.co_filename, f.f_lineno) if f is not None else ("", 0)


# ops whose CUDA kernels refuse floating operands of different dtypes when autocast does not cast them
SAME_DTYPE_OPS = {
    torch.conv1d, torch.conv2d, torch.conv3d, torch.nn.functional.linear, torch.matmul, torch.mm, torch.bmm,
    torch.addmm, torch.baddbmm,
}


def _check_one_dtype(func, args, kwargs) -> None:
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor) and a.is_floating_point()]
    if not tensors or torch.is_autocast_enabled(tensors[0].device.type):
        return
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        file, line = _caller()
        raise RuntimeError(f"{getattr(func, '__name__', func)} got floating operands of dtypes {sorted(map(str, dtypes))} "
                           f"outside autocast (from {file}:{line}); CUDA refuses this mix")


class StrictDevices(TorchFunctionMode):
    """Moves device-less factory calls from `project_dirs` to `meta`; records where they came from."""

    def __init__(self, project_dirs=PROJECT_DIRS):
        super().__init__()
        self.project_dirs = tuple(str(d) for d in project_dirs)
        self.moved: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func in SAME_DTYPE_OPS:
            _check_one_dtype(func, args, kwargs)
        if func in FACTORIES and kwargs.get("device") is None and not _data_is_tensor(func, args):
            file, line = _caller()
            if file.startswith(self.project_dirs):
                self.moved.append(f"{file.removeprefix(str(REPO) + '/')}:{line} {func.__name__}")
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _data_is_tensor(func, args) -> bool:
    """`torch.as_tensor(t)` / `torch.tensor(t)` of a tensor keeps that tensor's device."""
    return func in (torch.tensor, torch.as_tensor) and bool(args) and isinstance(args[0], torch.Tensor)


@contextlib.contextmanager
def strict_devices(project_dirs=PROJECT_DIRS):
    mode = StrictDevices(project_dirs)
    with mode:
        yield mode
