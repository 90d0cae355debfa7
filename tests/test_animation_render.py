import weakref

import imageio.v2 as imageio
import numpy as np
import pytest

from kandinsky_video.animation import AnimationSpec, Mp4Writer, render_animation

SIZE = 16


class FakeModel:
    """Counting stand-ins for the image model: flat images whose grey level says which call made them.

    Each call records what it was given and how many frames the writer had received by then.
    """

    def __init__(self, writer: "Recorder"):
        self.writer = writer
        self.calls: list[dict] = []

    def text_to_image(self, prompt: str, seed: int) -> np.ndarray:
        self.calls.append(dict(kind="t2i", prompt=prompt, seed=seed, written=self.writer.count))
        return np.full((SIZE, SIZE, 3), 0.5, dtype=np.float32)

    def image_to_image(self, image: np.ndarray, prompt: str, denoise_strength: float, seed: int) -> np.ndarray:
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32
        self.calls.append(dict(kind="i2i", prompt=prompt, seed=seed, strength=denoise_strength,
                               written=self.writer.count))
        return np.full((SIZE, SIZE, 3), 0.05 * len(self.diffused()), dtype=np.float32)

    def diffused(self) -> list[dict]:
        return [call for call in self.calls if call["kind"] == "i2i"]


class Recorder:
    """A writer that keeps no frame: the grey level of each, and how many earlier frames are still alive."""

    def __init__(self):
        self.count, self.levels, self.alive = 0, [], []
        self._refs: list[weakref.ref] = []

    def __call__(self, frame: np.ndarray) -> None:
        assert frame.shape == (SIZE, SIZE, 3)
        self.levels.append(float(frame.mean()))
        self._refs.append(weakref.ref(frame))
        self.alive.append(sum(ref() is not None for ref in self._refs[:-1]))
        self.count += 1


def render(cadence: int = 2, mode: str = "2D", **overrides) -> tuple[FakeModel, Recorder, int]:
    settings = dict(prompts=["a", "b"], durations=[1.0, 0.5], fps=8, width=SIZE, height=SIZE, cadence=cadence,
                    animation_mode=mode)
    spec = AnimationSpec(**{**settings, **overrides})
    writer = Recorder()
    model = FakeModel(writer)
    frames = render_animation(spec, model.text_to_image, model.image_to_image, writer, progress=False)
    return model, writer, frames


@pytest.mark.parametrize("mode, motion", [("2D", dict(zoom="0:(1.03)", angle="0:(2)")),
                                          ("3D", dict(translation_z="0:(5)", rotation_3d_y="0:(1)"))])
@pytest.mark.parametrize("cadence", [1, 2, 3, 5])
def test_cadence_diffuses_every_nth_frame_and_streams(cadence, mode, motion):
    model, writer, frames = render(cadence, mode, **motion)
    total = int(1.5 * 8) + 1
    assert frames == writer.count == total
    assert [call["kind"] for call in model.calls].count("t2i") == 1
    diffused_frames = list(range(cadence, total, cadence))
    # The call for frame k comes when exactly frames 0 .. k-1 have reached the writer: frames stream.
    assert [call["written"] for call in model.diffused()] == diffused_frames
    assert max(writer.alive) <= 2  # the renderer holds on to no more than its two chains


def test_cadence_cross_fades_from_the_previous_sample_to_the_new_one():
    _, writer, _ = render(cadence=4)  # still camera: every frame is a blend of flat samples
    samples = [0.5, 0.05, 0.1, 0.15]  # text-to-image, then the img2img samples of frames 4, 8 and 12
    expected = [samples[0]] * 4  # frames 0-3: no previous sample yet
    for k in (4, 8, 12):
        previous, new = samples[k // 4 - 1], samples[k // 4]
        expected += [(1 - (j + 1) / 4) * previous + (j + 1) / 4 * new for j in range(4) if k + j < 13]
    np.testing.assert_allclose(writer.levels, expected, atol=1e-6)


def test_prompts_switch_at_their_start_frames():
    model, _, _ = render(cadence=1, durations=[1.0, 0.5], prompts=["forest", "temple"])
    assert model.calls[0]["prompt"] == "forest"
    assert [call["prompt"] for call in model.diffused()] == ["forest"] * 7 + ["temple"] * 5  # frames 1-7, 8-12


def test_denoise_strength_and_seeds_follow_the_spec():
    model, _, _ = render(cadence=2, denoise_strength="0:(0.1), 12:(0.3)", seed=7)
    np.testing.assert_allclose([call["strength"] for call in model.diffused()],
                               np.interp([2, 4, 6, 8, 10, 12], [0, 12], [0.1, 0.3]))
    assert [call["seed"] for call in model.calls] == [7, 8, 9, 10, 11, 12, 13]
    fixed, _, _ = render(cadence=2, seed=7, seed_behavior="fixed")
    assert {call["seed"] for call in fixed.calls} == {7}
    drawn, _, _ = render(cadence=2, seed=7, seed_behavior="random")
    again, _, _ = render(cadence=2, seed=7, seed_behavior="random")
    seeds = [call["seed"] for call in drawn.calls]
    assert seeds[0] == 7 and len(set(seeds)) == len(seeds) and seeds == [call["seed"] for call in again.calls]


def test_a_model_returning_the_wrong_size_is_reported():
    spec = AnimationSpec(prompts=["a"], durations=[1.0], fps=4, width=SIZE, height=SIZE)
    with pytest.raises(ValueError, match=r"text_to_image returned shape \(8, 8, 3\)"):
        render_animation(spec, lambda prompt, seed: np.zeros((8, 8, 3)), None, progress=False)


def test_mp4_writer_streams_and_leaves_no_half_file(tmp_path):
    spec = AnimationSpec(prompts=["a"], durations=[1.0], fps=8, width=SIZE, height=SIZE, animation_mode="2D",
                         zoom="0:(1.05)")
    model = FakeModel(Recorder())
    with Mp4Writer(tmp_path / "flight.mp4", fps=spec.fps) as writer:
        render_animation(spec, model.text_to_image, model.image_to_image, writer, progress=False)
    assert imageio.mimread(tmp_path / "flight.mp4", format="FFMPEG")[0].shape == (SIZE, SIZE, 3)
    assert writer.frames == 9 and sorted(p.name for p in tmp_path.iterdir()) == ["flight.mp4"]

    def crash(image, prompt, denoise_strength, seed):
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError), Mp4Writer(tmp_path / "crash.mp4", fps=spec.fps) as writer:
        render_animation(spec, model.text_to_image, crash, writer, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flight.mp4"]
