"""The camera warps that move the previous frame to the next one: a 2D homography and Disco Diffusion's 3D flow.

Images are (H, W, 3) float32 arrays in [0, 1]. Both warps are backward warps done with ``grid_sample`` (bicubic by
default: a frame is warped hundreds of times, and bilinear blurs a little more each time). Pixel coordinates follow
OpenCV: pixel centres at integers, so the image centre is ((W - 1) / 2, (H - 1) / 2).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

TRANSLATION_SCALE = 1 / 200  # 3D translations are in 1/200 of the frame's half-width at depth 1 (Disco Diffusion)


def rotation_zoom_matrix(centre: tuple[float, float], angle: float, zoom: float) -> np.ndarray:
    """OpenCV's getRotationMatrix2D(centre, angle, zoom) in 3x3: degrees counter-clockwise; zoom > 1 enlarges."""
    a, b = zoom * math.cos(math.radians(angle)), zoom * math.sin(math.radians(angle))
    cx, cy = centre
    return np.array([[a, b, (1 - a) * cx - b * cy], [-b, a, b * cx + (1 - a) * cy], [0, 0, 1]])


def perspective_matrix(width: int, height: int, theta: float, phi: float, gamma: float, fov: float) -> np.ndarray:
    """Homography of the image plane turned by theta (about z), phi (about x), gamma (about y), in degrees.

    The four corners are rotated about the image centre and seen by a camera at d / (2 sin(fov / 2)), d the diagonal,
    which at zero angles sees the frame exactly as it is. (Deforum maps into a frame of side d / cos(fov / 2) and
    shifts back before rather than after the homography, so its theta turns about a point off the image.)
    """
    phi, gamma, theta = (math.radians(angle) for angle in (phi, gamma, theta))
    rotate_x = np.array([[1, 0, 0], [0, math.cos(phi), -math.sin(phi)], [0, math.sin(phi), math.cos(phi)]])
    rotate_y = np.array([[math.cos(gamma), 0, math.sin(gamma)], [0, 1, 0], [-math.sin(gamma), 0, math.cos(gamma)]])
    rotate_z = np.array([[math.cos(theta), -math.sin(theta), 0], [math.sin(theta), math.cos(theta), 0], [0, 0, 1]])
    distance = math.hypot(width, height) / (2 * math.sin(math.radians(fov) / 2))
    corners = np.array([[-width / 2, -height / 2, 0], [width / 2, -height / 2, 0],
                        [width / 2, height / 2, 0], [-width / 2, height / 2, 0]])
    turned = corners @ (rotate_x @ rotate_y @ rotate_z).T  # (4, 3)
    seen = turned[:, :2] * distance / (distance - turned[:, 2:])  # pinhole projection, (4, 2)
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    return _homography(corners[:, :2] + centre, seen + centre)


def _homography(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3x3 matrix taking four (4, 2) source points to the target points (OpenCV's getPerspectiveTransform)."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(source, target):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.append(np.linalg.solve(np.array(rows), np.array(rhs)), 1.0).reshape(3, 3)


def motion_matrix_2d(width: int, height: int, angle: float = 0.0, zoom: float = 1.0, translation_x: float = 0.0,
                     translation_y: float = 0.0, perspective: tuple[float, float, float, float] | None = None
                     ) -> np.ndarray:
    """Deforum's 2D camera step as a 3x3 matrix taking source pixels to destination pixels.

    Translate, then rotate and zoom about the centre, then (if ``perspective`` = (theta, phi, gamma, fov) is given)
    tilt. The product is written out: every Deforum fork writes ``np.matmul(perspective, rotation, translation)``,
    where the third argument is numpy's output buffer, so the translation is silently dropped.
    """
    translation = np.array([[1, 0, translation_x], [0, 1, translation_y], [0, 0, 1]])
    matrix = rotation_zoom_matrix(((width - 1) / 2, (height - 1) / 2), angle, zoom) @ translation
    if perspective is not None:
        matrix = perspective_matrix(width, height, *perspective) @ matrix
    return matrix


def warp_2d(image: np.ndarray, matrix: np.ndarray, border: str = "replicate", mode: str = "bicubic") -> np.ndarray:
    """Warp (H, W, 3) by the 3x3 source-to-destination ``matrix`` (OpenCV's warpPerspective); border replicate|wrap."""
    height, width = image.shape[:2]
    inverse = np.linalg.inv(matrix).tolist()  # destination pixel -> source pixel
    y, x = torch.arange(height, dtype=torch.float32)[:, None], torch.arange(width, dtype=torch.float32)[None, :]
    u, v, w = (row[0] * x + row[1] * y + row[2] for row in inverse)  # homogeneous source coordinates, each (H, W)
    source = torch.stack([u / w, v / w], dim=-1)  # (H, W, 2) pixel coordinates
    return _sample(image, (2 * source + 1) / torch.tensor([width, height]) - 1, border, mode)


def euler_xyz_matrix(x: float, y: float, z: float) -> torch.Tensor:
    """Rotation Rx(x) @ Ry(y) @ Rz(z) in radians, as pytorch3d's euler_angles_to_matrix(angles, "XYZ"); (3, 3)."""
    cx, sx, cy, sy, cz, sz = math.cos(x), math.sin(x), math.cos(y), math.sin(y), math.cos(z), math.sin(z)
    rotate_x = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rotate_y = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rotate_z = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rotate_x @ rotate_y @ rotate_z


def warp_3d(image: np.ndarray, depth: np.ndarray, translation: tuple[float, float, float],
            rotation: tuple[float, float, float], fov: float = 40.0, mode: str = "bicubic") -> np.ndarray:
    """Disco Diffusion's 3D step: move every pixel as a point at its depth seen by a camera that moved, then sample.

    ``depth`` is (H, W) in the units where the frame spans x, y in [-1, 1] (1 everywhere without a depth model);
    ``translation`` = (tx, ty, tz) in 1/200 units, +tx right, +ty up, +tz forward; ``rotation`` in degrees, Euler
    XYZ. The new camera is R, T = (-tx, ty, -tz) / 200 in pytorch3d's row-vector convention (x_view = p R + T); each
    point's flow is the difference of its perspective projections x_view / (z_view tan(fov / 2)) by the two cameras.
    Near and far planes only change the projected depth, which the flow does not use, so they do not appear.
    """
    height, width = image.shape[:2]
    if depth.shape != (height, width):
        raise ValueError(f"depth map is {depth.shape}, the image {(height, width)}: predict depth on the same frame")
    grid = _identity_grid(height, width)  # (H, W, 2)
    points = torch.cat([grid, torch.from_numpy(depth).float()[..., None]], dim=-1).reshape(-1, 3)  # (H*W, 3)
    tx, ty, tz = translation
    camera_translation = torch.tensor([-tx, ty, -tz]) * TRANSLATION_SCALE
    camera_rotation = euler_xyz_matrix(*(math.radians(angle) for angle in rotation)).float()
    tan_half_fov = math.tan(math.radians(fov) / 2)
    old = points[:, :2] / (points[:, 2:] * tan_half_fov)
    view = points @ camera_rotation + camera_translation
    new = view[:, :2] / (view[:, 2:] * tan_half_fov)
    flow = (new - old).reshape(height, width, 2)
    # Disco samples at a pixel-centre grid but projects a linspace(-1, 1) grid; one grid for both keeps tz a zoom
    # about the exact centre (the two differ by a factor (W - 1) / W in flow).
    return _sample(image, grid - flow, "replicate", mode)


def _identity_grid(height: int, width: int) -> torch.Tensor:
    """Pixel centres in grid_sample's coordinates (align_corners=False): (H, W, 2) holding x, y in (-1, 1)."""
    y = (2 * torch.arange(height) + 1) / height - 1
    x = (2 * torch.arange(width) + 1) / width - 1
    y, x = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([x, y], dim=-1)


def _sample(image: np.ndarray, grid: torch.Tensor, border: str, mode: str) -> np.ndarray:
    """Sample (H, W, 3) at grid (H, W, 2) in align_corners=False coordinates; result clipped to [0, 1]."""
    pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]  # (1, 3, H, W)
    if border == "wrap":
        # grid_sample has no wrap mode: take the coordinate modulo the size inside a circularly padded copy, whose
        # two-pixel margin gives bicubic interpolation its neighbours across the seam.
        height, width = image.shape[:2]
        size = torch.tensor([width, height])
        wrapped = torch.remainder(((grid + 1) * size - 1) / 2, size) + 2  # pixel coordinates in the padded copy
        pixels = F.pad(pixels, (2, 2, 2, 2), mode="circular")
        grid = (2 * wrapped + 1) / (size + 4) - 1
    elif border != "replicate":
        raise ValueError(f"border must be 'replicate' or 'wrap', got {border!r}")
    warped = F.grid_sample(pixels, grid[None], mode=mode, padding_mode="border", align_corners=False)
    return warped[0].clamp(0, 1).permute(1, 2, 0).contiguous().numpy()  # (H, W, 3)
