"""`hieratok demo [--quick] [--out DIR]`: the end-to-end CPU demo, single-scale vs HieraTok."""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--quick", action="store_true", help="a smaller run (under 2 minutes on 2 cores)")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--nproc", type=int, default=None,
                   help="runs trained at once, the cores shared among them (default: 2 when 2 cores exist)")
    p.add_argument("--inception-weights", default=None,
                   help="real torch-fidelity Inception weights (default: the torch hub cache, else test-made)")
    p.add_argument("--vgg-weights", default=None,
                   help="real torchvision VGG16 weights for LPIPS (default: the torch hub cache, else test-made)")


def run(args) -> int:
    from hieratok.demo.main import run_demo

    run_demo(args.out, quick=args.quick, nproc=args.nproc, inception=args.inception_weights, vgg=args.vgg_weights)
    return 0
