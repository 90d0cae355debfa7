import pytest
import torch

from conftest import plain_config
from kandinsky_video.models.unet_interpolation import (
    KandinskyVideoInterpolationUNet,
    interleave_keyframes,
    merge_groups,
    split_groups,
)
from kandinsky_video.testing import randomize_zero_parameters


def inputs(k: int, keyframes: int = 4, size: int = 8, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 4 * k, keyframes - 1, size, size, generator=generator)
    return sample, torch.randn(2, 4, keyframes, size, size, generator=generator)


@pytest.mark.parametrize("k, image_conv_on", [(3, "first_noisy"), (10, "first_noisy"), (3, "left_keyframe")])
def test_init_predicts_k_copies_of_the_image_prediction(t2i_unet, k, image_conv_on):
    null = torch.randn(8)
    model = KandinskyVideoInterpolationUNet.from_kandinsky3(
        t2i_unet, frames_between=k, null_embedding=null, image_conv_on=image_conv_on
    ).eval()
    sample, keyframes = inputs(k)
    with torch.no_grad():
        out = split_groups(model(sample, keyframes, 400, skip=3).sample, k)  # (B, C, G, k, H, W)
        # The image U-Net on the first noisy latent (or the left keyframe) of each group, with the released null
        # context [null, 0].
        seen = split_groups(sample, k)[:, :, :, 0] if image_conv_on == "first_noisy" else keyframes[:, :, :-1]
        context = torch.stack([null, torch.zeros(8)]).expand(2, -1, -1)
        reference = torch.stack(
            [t2i_unet(seen[:, :, g], 400, context, torch.tensor([[1, 0]] * 2)).sample for g in range(3)], dim=2
        )
    assert out.shape == (2, 4, 3, k, 8, 8)
    for frame in range(k):
        torch.testing.assert_close(out[:, :, :, frame], reference, atol=1e-5, rtol=1e-5)


def test_unknown_image_conv_input_raises(t2i_unet):
    with pytest.raises(ValueError, match=r"image_conv_on='right'; choose one of \('first_noisy', 'left_keyframe'\)"):
        KandinskyVideoInterpolationUNet.from_kandinsky3(t2i_unet, image_conv_on="right")


def test_groups_interact_and_conditioning_is_used_once_trained(t2i_unet):
    model = KandinskyVideoInterpolationUNet.from_kandinsky3(t2i_unet).eval()
    sample, keyframes = inputs(3)
    with torch.no_grad():
        fresh = model(sample, keyframes, 400, skip=3).sample
        # At init, skip and perturbation are merged with weight 0 and groups do not see each other.
        torch.testing.assert_close(model(sample, keyframes, 400, skip=1, perturbation=200).sample, fresh)
        changed = sample.clone()
        changed[:, :, 0] += 1
        torch.testing.assert_close(model(changed, keyframes, 400, skip=3).sample[:, :, 2], fresh[:, :, 2])

        randomize_zero_parameters(model)
        model.perturbation_merge.data.fill_(0.3)
        model.skip_merge.data.fill_(0.5)
        out = model(sample, keyframes, 400, skip=3).sample
        assert (model(sample, keyframes, 400, skip=1).sample - out).abs().max() > 1e-4
        assert (model(sample, keyframes, 400, skip=3, perturbation=200).sample - out).abs().max() > 1e-4
        # The temporal convs run over groups: a change in group 0 now reaches group 2 (two (3,1,1) convs away).
        assert (model(changed, keyframes, 400, skip=3).sample[:, :, 2] - out[:, :, 2]).abs().max() > 1e-5


def test_interleave_places_keyframes_every_k_plus_one():
    keyframes = torch.arange(4.0).reshape(1, 1, 4, 1, 1)
    between = 10 + torch.arange(3 * 10.0).reshape(1, 1, 3, 10, 1, 1)
    video = interleave_keyframes(keyframes, between)
    assert video.shape[2] == 11 * 4 - 10  # 11N - 10 frames for k=10
    assert video[0, 0, ::11, 0, 0].tolist() == [0, 1, 2, 3]
    assert video[0, 0, 1:11, 0, 0].tolist() == between[0, 0, 0, :, 0, 0].tolist()
    frames = torch.randn(2, 4, 3, 5, 2, 2)
    torch.testing.assert_close(split_groups(merge_groups(frames), 5), frames)


def test_save_and_load_round_trip(t2i_unet, tmp_path):
    model = KandinskyVideoInterpolationUNet.from_kandinsky3(t2i_unet, frames_between=10).eval()
    randomize_zero_parameters(model)
    sample, keyframes = inputs(10)
    model.save_pretrained(tmp_path)
    loaded = KandinskyVideoInterpolationUNet.from_pretrained(tmp_path).eval()
    assert plain_config(loaded.config) == plain_config(model.config)
    saved, reloaded = model.state_dict(), loaded.state_dict()
    assert saved.keys() == reloaded.keys() and all(torch.equal(saved[k], reloaded[k]) for k in saved)
    with torch.no_grad():  # (bit-equal weights; the CPU kernels may still pick other summation orders per instance)
        torch.testing.assert_close(loaded(sample, keyframes, 9, skip=2).sample, model(sample, keyframes, 9, skip=2).sample)


def test_whole_model_trains(t2i_unet):
    model = KandinskyVideoInterpolationUNet.from_kandinsky3(t2i_unet)
    sample, keyframes = inputs(3)
    model(sample, keyframes, 100, skip=torch.tensor([1, 12])).sample.square().mean().backward()
    assert model.spatial.conv_in.weight.grad is not None
    assert model.perturbation_merge.grad is not None and model.skip_merge.grad is not None


def test_bad_shapes(t2i_unet):
    model = KandinskyVideoInterpolationUNet.from_kandinsky3(t2i_unet)
    sample, keyframes = inputs(3)
    with pytest.raises(ValueError, match="k=3"):
        model(sample[:, :8], keyframes, 1, skip=1)
    with pytest.raises(ValueError, match="G\\+1"):
        model(sample, keyframes[:, :, :3], 1, skip=1)
    with pytest.raises(ValueError, match="frames_between"):
        KandinskyVideoInterpolationUNet(frames_between=0)
