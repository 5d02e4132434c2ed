"""`hieratok eval --run-dir DIR --data SHARDS [--metrics rfid,psnr,ssim,lpips] [--num N] --out metrics.json`.

Reconstruction metrics of a tokenizer export on a validation split, with the protocol they were
computed under. Prints the JSON as the last line of stdout and writes it to --out.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none is drawn when stderr is not a terminal)")
    p.add_argument("--run-dir", required=True, help="run directory (its export/ is evaluated) or an export folder")
    p.add_argument("--data", required=True, help="prepared shards (folder or s3:// URL); its --split is read")
    p.add_argument("--metrics", default="rfid,psnr,ssim,lpips", help="comma list of rfid,psnr,ssim,lpips")
    p.add_argument("--num", type=int, default=1000, help="number of validation images (default 1000)")
    p.add_argument("--split", default="val", help="split of --data (default val)")
    p.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--inception-weights", default=None,
                   help="torch-fidelity Inception weights (default: the torch hub cache)")
    p.add_argument("--reference-stats", default=None,
                   help="rFID reference statistics .npz (from `hieratok fid --save-stats`); default: the same real images")
    p.add_argument("--vgg-weights", default=None, help="torchvision vgg16-397923af.pth for LPIPS (default: hub cache)")
    p.add_argument("--lpips-heads", default=None, help="LPIPS v0.1 VGG heads (lpips/weights/v0.1/vgg.pth; default: hub cache)")
    p.add_argument("--out", default=None, help="write the JSON here (default: RUN_DIR/eval/metrics.json for a run dir)")


def run(args) -> int:
    from hieratok import progress

    progress.set_enabled(not args.no_progress)
    from data_pipeline.errors import DataError
    from hieratok.eval.eval_run import evaluate_export

    try:
        result = evaluate_export(
            args.run_dir, args.data, metrics=args.metrics, num_images=args.num, split=args.split,
            batch_size=args.batch_size, device=args.device, inception_weights=args.inception_weights,
            vgg_weights=args.vgg_weights, lpips_heads=args.lpips_heads, reference_stats=args.reference_stats)
    except (FileNotFoundError, ValueError, DataError) as e:
        print(f"hieratok eval: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else None
    if out is None and (Path(args.run_dir) / "export").is_dir():
        out = Path(args.run_dir) / "eval" / "metrics.json"
    line = json.dumps(result)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(line + "\n")
    print(line, flush=True)
    return 0
