"""A training run over a manifest with an empty caption and three bad rows in a row: it trains and names them all."""

import json
import logging
import re
from pathlib import Path

from kandinsky_video.data.synthetic import moving_square, write_mp4, write_square_videos
from kandinsky_video.training import load_config, train

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny_keyframes.yaml"


def test_run_skips_an_empty_caption_and_bad_videos_and_names_their_rows(tmp_path, caplog):
    manifest = write_square_videos(tmp_path, count=3, num_frames=24)  # rows 2-4
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video" * 50)
    write_mp4(moving_square("blue", 5, 64, 64), tmp_path / "short.mp4")  # a 4-frame clip at stride 4 needs 13
    with open(manifest, "a") as file:
        file.write("000.mp4,\n")  # row 5: empty caption (the text encoder would stop the run at its batch)
        file.write("corrupt.mp4,a broken video\ngone.mp4,a missing video\nshort.mp4,a short video\n")  # rows 6-8
    run = tmp_path / "run"
    # 3 steps x 2 clips = one epoch of the 6 captioned rows: each bad row comes up at least once as itself.
    config = load_config("keyframes", CONFIG, [
        f"data.source={manifest}", f"run.output_dir={run}", "optim.steps=3", "run.checkpoint_every=3",
        "run.report_to=[]"])
    with caplog.at_level(logging.WARNING):
        assert (train(config) / "unet_temporal" / "temporal.safetensors").is_file()
    assert f"{manifest}: skipped 1 row with an empty caption: line 5" in caplog.messages
    reports = [message for message in caplog.messages if "skipped a clip: " in message]  # after accelerate's [RANK 0]
    named = {int(re.search(rf"skipped a clip: {re.escape(str(manifest))}:(\d) \(", report)[1]) for report in reports}
    assert named == {6, 7, 8}, reports
    assert any(f":7 ({tmp_path / 'gone.mp4'}): RuntimeError" in report for report in reports)
    assert any(f":8 ({tmp_path / 'short.mp4'}): too short" in report for report in reports)
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert metrics[-1]["step"] == 3 and metrics[-1]["skipped_clips"] == len(reports)
