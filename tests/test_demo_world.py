"""The demo's procedural world and its analyser."""

import json

import imageio.v3 as iio
import numpy as np

from kandinsky_video.data.records import load_records
from kandinsky_video.demo.analysis import path_smoothness, read_video
from kandinsky_video.demo.world import HELD_OUT, Scene, all_scenes, render, write_world


def test_scenes_split_and_captions():
    train, held_out = all_scenes(held_out=False), all_scenes(held_out=True)
    assert len(train) + len(held_out) == len(all_scenes()) == 216
    assert not {(s.colour, s.shape) for s in train} & HELD_OUT
    assert {(s.colour, s.shape) for s in held_out} == HELD_OUT
    assert Scene("circle", "red", "black", "moving left").caption == "a red circle moving left on a black background"


def test_rendering_is_deterministic_by_seed():
    scene = Scene("triangle", "blue", "white", "moving up")
    np.testing.assert_array_equal(render(scene, seed=3), render(scene, seed=3))
    assert np.abs(render(scene, seed=3) - render(scene, seed=4)).max() > 0.1


def test_analyser_reads_the_world_back():
    scenes = all_scenes()[::6]  # every shape, colour, background and motion appears
    for index, scene in enumerate(scenes):
        reading = read_video(render(scene, seed=index))
        assert reading.background == scene.background
        assert all(reading.matches(scene).values()), (scene, reading.colour, reading.shape, reading.motion)
    static = np.repeat(render(scenes[0])[:1], 10, axis=0)
    assert read_video(static).motion is None  # no motion is not mistaken for one
    assert path_smoothness(read_video(render(Scene("square", "red", "gray", "moving right"))).track) < 0.5


def test_world_files_and_manifest(tmp_path):
    scenes = [Scene("circle", "red", "black", "moving right"), Scene("square", "green", "white", "shrinking")]
    manifest = write_world(tmp_path, scenes, repeats=2, frames=25)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert len(rows) == 4 and rows[0]["caption"] == scenes[0].caption
    records = load_records(manifest)
    video = iio.imread(records[2].path, index=None)
    assert video.shape == (25, 64, 64, 3)
    assert all(read_video(video).matches(scenes[1]).values())  # survives the mp4 codec
