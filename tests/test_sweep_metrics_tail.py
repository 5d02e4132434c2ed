"""Following a run's metrics.jsonl while the trainer writes it, through a resume that rewrites it."""
import json

from hieratok.metrics_file import MetricsTail, read_metrics


def line(step: int, **extra) -> str:
    return json.dumps({"step": step, "loss": 1.0 / step, **extra}) + "\n"


def test_tail_returns_whole_new_lines_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    assert tail.read_new() == []
    path.write_text(line(1) + line(2) + '{"step": 3, "lo')
    assert [r["step"] for r in tail.read_new()] == [1, 2]
    with open(path, "a") as f:
        f.write('ss": 0.3}\n')
    assert tail.read_new() == [{"step": 3, "loss": 0.3}]
    assert tail.read_new() == []


def test_tail_rereads_a_file_rewritten_by_a_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    tail = MetricsTail(path)
    path.write_text("".join(line(s) for s in range(1, 8)))
    assert len(tail.read_new()) == 7
    # the resumed trainer keeps steps up to its checkpoint (4), then logs on
    path.write_text("".join(line(s) for s in range(1, 5)) + line(4, event="resumed") + line(5))
    assert [r["step"] for r in tail.read_new()] == [1, 2, 3, 4, 4, 5]


def test_read_metrics_leaves_out_events_and_torn_lines(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(line(1) + line(2) + line(2, event="checkpoint_saved") + "{torn\n" + line(3))
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    assert all("event" not in r for r in read_metrics(tmp_path))
