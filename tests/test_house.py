"""The house stays the way it was cut: no import cycle between project files (lazy imports inside
functions included), and only the entry points import the training engine (`hieratok.train`)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("hieratok", "data_pipeline", "cluster")
# what may import hieratok.train: the engine itself, the commands, the cluster launchers, the demo
ENTRY_POINTS = ("hieratok.train", "hieratok.commands", "hieratok.cli", "hieratok.__main__", "cluster",
                "hieratok.demo")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()

    def project_module(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for name in names:
                target = project_module(name)
                if target is not None and target != module:
                    graph[module].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_between_project_files():
    assert _cycles(_import_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_entry_points_import_the_training_engine():
    offenders = sorted(f"{module} -> {target}" for module, targets in _import_graph().items()
                       for target in targets
                       if target.startswith("hieratok.train") and not module.startswith(ENTRY_POINTS))
    assert offenders == []


def test_the_engine_never_asks_which_task_or_backend_it_runs():
    """Tasks and backends differ through their classes' methods (`hieratok.task.Task`, the abstract
    `Backend`), not through branches in the engine."""
    engine = [p for p in (REPO / "hieratok" / "train").rglob("*.py") if "backends" not in p.parts]
    branches = ("cfg.task ==", "backend.name", "hasattr(task", "hasattr(self.task", "hasattr(backend",
                "hasattr(wrapped", "isinstance(backend")
    offenders = [f"{p.relative_to(REPO)}: {b}" for p in engine for b in branches if b in p.read_text()]
    assert offenders == ["hieratok/train/task_registry.py: cfg.task =="]  # the one place that picks the task


def test_every_backend_and_task_implements_the_whole_interface():
    import inspect

    from hieratok.generator.task import GeneratorTask
    from hieratok.task import Task
    from hieratok.tokenizer.task import TokenizerTask
    from hieratok.train.backends.base import Backend
    from hieratok.train.backends.ddp import DDPBackend
    from hieratok.train.backends.deepspeed_engine import DeepSpeedBackend
    from hieratok.train.backends.fsdp import FSDPBackend

    for cls, base in ((DDPBackend, Backend), (FSDPBackend, Backend), (DeepSpeedBackend, Backend),
                      (TokenizerTask, Task), (GeneratorTask, Task)):
        assert issubclass(cls, base) and not inspect.isabstract(cls), (cls, getattr(cls, "__abstractmethods__", None))


def test_blocks_are_compiled_before_any_wrapping_or_sharding():
    """torchtitan's order: each block compiled first, then FSDP2 / DDP wrap the model (their hooks stay
    outside the compiled regions). Compiling is lazy, so this builds no kernel."""
    import torch

    from hieratok.config.loader import load_config
    from hieratok.tokenizer.task import TokenizerTask
    from hieratok.train.backends.torch_dcp import TorchBackend

    seen = {}

    class Recording(TorchBackend):
        def _wrap(self, model):
            seen["compiled"] = [b._compiled_call_impl is not None for b in self.task.block_modules(model)]
            return model

    cfg = load_config("configs/tokenizer/tiny_single.yaml", ["train.compile=true"])
    task = TokenizerTask(cfg)
    info = type("Info", (), {"device": torch.device("cpu"), "rank": 0, "world_size": 1})()
    Recording(task.build_model(), task, cfg, info)
    assert seen["compiled"] and all(seen["compiled"])
