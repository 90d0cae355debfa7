import re
from pathlib import Path

import numpy as np
import pytest

from kandinsky_video.animation import MOTION_PRESETS, AnimationSpec

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "animation").glob("*.yaml"))


def spec(**overrides) -> AnimationSpec:
    settings = dict(prompts=["a", "b", "c"], durations=[1.5, 0.7, 2.0], fps=10)
    return AnimationSpec(**{**settings, **overrides})


def test_frame_count_and_prompt_start_frames():
    animation = spec()
    assert animation.num_frames == int(4.2 * 10) + 1 == 43
    assert animation.prompt_starts == [0, int(1.5 * 10), int(2.2 * 10)] == [0, 15, 22]
    assert [animation.prompt_at(f) for f in (0, 14, 15, 21, 22, 42)] == ["a", "a", "b", "b", "c", "c"]


def test_defaults_follow_the_reference_table():
    values = spec().schedules()
    expected = {"angle": 0, "zoom": 1.0, "translation_x": 0, "translation_z": 0, "rotation_3d_y": 0, "fov": 40,
                "perspective_flip_fov": 56, "noise": 0.0, "denoise_strength": 0.13, "contrast": 1.0}
    for name, value in expected.items():
        np.testing.assert_array_equal(values[name], np.full(43, value), err_msg=name)
    animation = spec()
    assert (animation.cadence, animation.border, animation.seed_behavior) == (2, "replicate", "iter")
    assert (animation.unsharp_kernel, animation.unsharp_sigma, animation.unsharp_amount) == (5, 1.0, 0.2)


def test_presets_ramp_from_their_value_to_zero_over_the_segment():
    animation = spec(motion_presets=["zoomin", "none", "around_left"], accelerations=[2.0, 1.0, 1.0],
                     translation_x="0:(1)")
    values = animation.schedules()
    frames = np.arange(43)
    np.testing.assert_allclose(values["translation_z"], np.where(frames < 15, 2.0 * (1 - frames / 15), 0.0))
    around = np.where(frames >= 22, 1 - (frames - 22) / (42 - 22), 0.0)  # the last segment ends on the last frame
    np.testing.assert_allclose(values["translation_x"], 1.0 - 2.5 * around)  # added to the user's schedule
    np.testing.assert_allclose(values["rotation_3d_y"], 0.5 * around)


def test_unknown_motion_preset_lists_the_presets():
    with pytest.raises(ValueError, match="unknown motion preset 'zoom_in'") as error:
        spec(motion_presets=["zoomin", "zoom_in", "none"])
    assert all(repr(name) in str(error.value) for name in MOTION_PRESETS)


def test_yaml_unknown_key_names_the_closest_valid_key(tmp_path):
    path = tmp_path / "animation.yaml"
    path.write_text("prompts: [a castle]\ndurations: [2]\ndenoising_strength: '0:(0.2)'\n")
    with pytest.raises(ValueError, match="unknown animation setting 'denoising_strength'; did you mean "
                                         "'denoise_strength'"):
        AnimationSpec.from_yaml(path)
    path.write_text("prompts: [a castle]\ndurations: [2]\nzom: 1.02\n")
    with pytest.raises(ValueError, match="did you mean 'zoom'"):
        AnimationSpec.from_yaml(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        AnimationSpec.from_yaml(tmp_path / "missing.yaml")


def test_yaml_numbers_are_constant_schedules(tmp_path):
    path = tmp_path / "animation.yaml"
    path.write_text("prompts: [a castle]\ndurations: [1]\nfps: 4\nzoom: 1.02\nanimation_mode: 2D\n")
    np.testing.assert_array_equal(AnimationSpec.from_yaml(path).schedules()["zoom"], np.full(5, 1.02))


@pytest.mark.parametrize("overrides, message", [
    (dict(durations=[1.0]), "one duration in seconds per prompt"),
    (dict(cadence=0), "cadence must be a whole number from 1 to 1000, got 0"),
    (dict(durations=[1.0, float("inf"), 1.0]), "durations[1] (seconds) must be a finite number above 0 and at most 3600"),
    (dict(durations=[1.0, 1e12, 1.0]), "durations[1] (seconds) must be a finite number above 0 and at most 3600"),
    (dict(fps=float("inf")), "fps must be a finite number above 0 and at most 1000, got inf"),
    (dict(durations=[3600.0, 3600.0, 3600.0], fps=10.0), "would have 108001 frames (10800 s at 10 fps); the limit"),
    (dict(seed=-1), "seed must be a whole number from 0 to 18446744073709551615, got -1"),
    (dict(seed=2**64 - 5), "passes the largest seed"),
    (dict(zoom="0:(1e300)"), "zoom is 1e+300 at frame 0; it must be from 0.01 to 100"),
    (dict(translation_x="0:(0), 3:(1e30)"), "translation_x is 3.333e+29 at frame 1; it must be within +-10000"),
    (dict(angle="0:(1e300)"), "angle is 1e+300 at frame 0; it must be within +-360 degrees per frame"),
    (dict(angle="9223372036854775808:(1)"), "frame 9223372036854775808 is beyond the largest keyframe index"),
    (dict(angle="0:(" + "-" * 100_000 + "1)"), "the expression has 100001 characters; the limit is 1000"),
    (dict(angle="0:(" + "-" * 900 + "1)"), "nested more than 100 levels deep"),
    (dict(color_coherence="lab"), "color_coherence must be one of"),
    (dict(zoom="0:(1.0), 5:(1.1"), "zoom: schedule"),
    (dict(unsharp_kernel=4), "unsharp_kernel must be odd"),
    (dict(animation_mode="2D", motion_presets=["right", "none", "none"]), "set animation_mode: 3D"),
])
def test_invalid_settings_say_how_to_fix_them(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        spec(**overrides)


def test_out_of_range_schedule_values_name_the_frame():
    with pytest.raises(ValueError, match="denoise_strength is 1.2 at frame 10; it must be in \\[0, 1\\]"):
        spec(denoise_strength="0:(0.2), 9:(0.2), 10:(1.2)").schedules()


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: path.name)
def test_example_configs_load(path):
    animation = AnimationSpec.from_yaml(path)
    assert len(animation.schedules()["zoom"]) == animation.num_frames
