"""`hieratok export --run-dir DIR [--weights ema|raw] [--out DIR] [--push-to-hub REPO [--private]]`: a run's
latest checkpoint -> `model.safetensors` + `config.json` + a model card (`README.md`), loadable with
`from_pretrained`, from any backend and world size; optionally uploaded as a Hugging Face Hub model repo."""
from __future__ import annotations


def add_arguments(p) -> None:
    p.add_argument("--run-dir", required=True, help="run directory holding checkpoints/")
    p.add_argument("--weights", choices=["ema", "raw"], default="ema", help="EMA weights (default) or raw weights")
    p.add_argument("--out", default=None, help="output folder (default: RUN_DIR/export)")
    p.add_argument("--push-to-hub", default=None, metavar="REPO",
                   help="upload the export to this Hugging Face Hub model repo (owner/name; HF_TOKEN or a login)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repo private")


def run(args) -> int:
    from hieratok.train.export import export_from_checkpoint

    out = export_from_checkpoint(args.run_dir, args.weights, args.out)
    print(out)
    if args.push_to_hub:
        from hieratok.nn.hub import push

        print(push(out, args.push_to_hub, private=args.private))
    return 0
