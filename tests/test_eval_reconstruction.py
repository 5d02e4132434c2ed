"""evaluate_reconstruction: the metrics it reports, and 2 gloo ranks giving the single-process result."""
import json

import pytest
import torch
import torch.multiprocessing as mp

from hieratok.config.errors import ConfigError
from hieratok.eval.image_metrics import psnr, ssim, to_unit_range
from hieratok.eval.reconstruction import evaluate_reconstruction

METRICS = ["rfid", "psnr", "ssim", "lpips"]


def _tiny_tokenizer():
    from hieratok.config.loader import load_config
    from hieratok.tokenizer.model import Tokenizer

    torch.manual_seed(0)
    return Tokenizer(load_config("configs/tokenizer/tiny_hieratok.yaml").model)


def _images(uint8_images):
    return uint8_images.float() / 127.5 - 1


def _rank_batches(images, rank):
    """Uneven on purpose: rank 0 gets 2 batches of 1, rank 1 one batch of 2 (so rank 1 pads a step)."""
    return [images[i:i + 1] for i in range(2)] if rank == 0 else [images[2:4]]


def _rank_main(rank, init_file, images, inception_weights, lpips_files, out_dir):
    import torch.distributed as dist

    from hieratok.tokenizer.lpips import LPIPS

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        batches = [{"image": b} for b in _rank_batches(images, rank)]
        result = evaluate_reconstruction(_tiny_tokenizer(), batches, METRICS, 4, "cpu",
                                         inception_weights=inception_weights, lpips=LPIPS.from_files(*lpips_files))
        (out_dir / f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def lpips_files(tmp_path_factory):
    from hieratok.eval.weights_for_tests import make_test_lpips_heads, make_test_vgg16_weights

    d = tmp_path_factory.mktemp("lpips")
    return make_test_vgg16_weights(d / "vgg.pth"), make_test_lpips_heads(d / "heads.pth")


def test_two_gloo_ranks_equal_one_process(tmp_path, fid_image_sets, test_inception_weights, lpips_files):
    from hieratok.tokenizer.lpips import LPIPS

    images = _images(fid_image_sets["smooth"][1])
    mp.spawn(_rank_main, args=(str(tmp_path / "init"), images, str(test_inception_weights), lpips_files, tmp_path),
             nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1], "every rank returns the merged result"

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' thread count: CPU kernels round differently at another one
    try:
        batches = [{"image": b} for r in range(2) for b in _rank_batches(images, r)]
        single = evaluate_reconstruction(_tiny_tokenizer(), batches, METRICS, 4, "cpu",
                                         inception_weights=test_inception_weights, lpips=LPIPS.from_files(*lpips_files))
    finally:
        torch.set_num_threads(threads)
    assert single["num_images"] == ranks[0]["num_images"] == 4
    assert single["rfid"] > 0
    for m in ("psnr", "ssim", "lpips"):
        assert ranks[0][m] == pytest.approx(single[m], rel=1e-9), m
    assert ranks[0]["rfid"] == pytest.approx(single["rfid"], rel=1e-6)


def test_metrics_are_per_image_means_of_the_reconstructions(fid_image_sets):
    model = _tiny_tokenizer().train()
    images = _images(fid_image_sets["noise"][1])
    batches = [{"image": images[i:i + 2], "label": torch.zeros(2)} for i in range(0, 6, 2)]
    result = evaluate_reconstruction(model, batches, "psnr,ssim", 5, "cpu")  # stops after 5 images
    assert model.training, "the caller's train/eval mode is restored"
    with torch.no_grad():
        recon, _ = model.eval()(images[:5], sample=False)
    x, y = to_unit_range(images[:5]), to_unit_range(recon)
    assert result["num_images"] == 5
    assert result["psnr"] == pytest.approx(psnr(x, y).mean().item(), rel=1e-6)
    assert result["ssim"] == pytest.approx(ssim(x, y).mean().item(), rel=1e-6)
    assert set(result) == {"psnr", "ssim", "num_images"}


def test_unknown_metric_names_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown eval metric.*'fdi'.*valid: rfid, psnr, ssim, lpips"):
        evaluate_reconstruction(_tiny_tokenizer(), [], ["fdi"], 4, "cpu")


def test_periodic_evaluator_follows_the_eval_config(fid_image_sets):
    from hieratok.config.loader import load_config
    from hieratok.eval.reconstruction_scorer import ReconstructionScorer

    cfg = load_config("configs/tokenizer/tiny_hieratok.yaml",
                      ["eval.every_steps=100", "eval.num_images=4", "eval.metrics=[psnr,ssim]", "eval.batch_size=2"])
    evaluator = ReconstructionScorer(cfg.eval, cfg.loss.lpips, "cpu")
    assert [evaluator.due(s) for s in (0, 50, 100, 200)] == [False, False, True, True]
    images = _images(fid_image_sets["smooth"][1])
    result = evaluator(_tiny_tokenizer(), [{"image": images[i:i + 2]} for i in range(0, 6, 2)])
    assert result["num_images"] == 4 and set(result) == {"psnr", "ssim", "num_images"}
    with pytest.raises(ConfigError, match="lpipz"):
        ReconstructionScorer(load_config("configs/tokenizer/tiny_hieratok.yaml", ["eval.metrics=[lpipz]"]).eval)
