"""Throughput of the streaming path (``ies.data.streaming``): images/s that DataLoader workers decode, crop and
deliver to the device as normalised batches, on a generated ImageFolder of JPEGs of ImageNet's typical
size (500x375, smooth random content, quality 90).

    python benchmarks/streaming_loader.py                              # 256 images, workers 0 and 1
    python benchmarks/streaming_loader.py --images 4096 --workers 0 4 8 16 --device cuda

Prints one JSON object: for each worker count, images/s of a training pass (``RandomResizedCrop(224)`` +
flip, shuffled, the per-sample seeding included) and of an evaluation pass (resize 256 + centre crop
224), the first pass (worker start-up) excluded. Against ImageNet: one epoch of 1,281,167 images at R
images/s takes 1,281,167 / R seconds of loading, whatever the model (overlapped with compute when
R exceeds the model's rate).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a copy of the repository without installing it

from ies.data.streaming import StreamingLoader, image_folder_data  # noqa: E402


def write_folder(root: Path, images: int, seed: int = 0) -> None:
    """``images`` JPEGs of 500x375 in two classes, under ``root/train`` and (a quarter) ``root/val``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", images), ("val", max(images // 4, 2))):
        for i in range(count):
            folder = root / split / f"c{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)  # upsampled: smooth, JPEG-like content
            Image.fromarray(small).resize((500, 375), Image.BICUBIC).save(folder / f"{i:06d}.jpg", quality=90)


def rate(loader: StreamingLoader, batch_size: int, augment: bool, device: torch.device) -> float:
    """Images/s of one pass over every sample (after a warm-up pass that starts the workers)."""
    for _batch in loader.batches(None, batch_size, shuffle=augment, augment=augment):
        pass
    t0 = time.perf_counter()
    for _batch in loader.batches(None, batch_size, shuffle=augment, augment=augment):
        pass
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return len(loader) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    out = {"images": args.images, "image": "500x375 JPEG", "crop": 224, "batch_size": args.batch_size,
           "device": str(device), "torch_threads": torch.get_num_threads(), "images_per_s": {}}
    with tempfile.TemporaryDirectory() as tmp:
        write_folder(Path(tmp), args.images)
        data = image_folder_data(tmp, image_size=224)
        for workers in args.workers:
            loader = StreamingLoader(data.train, data.y_train, device, mean=data.mean, std=data.std, augment=True,
                                     train_transform=data.train_transform, eval_transform=data.eval_transform,
                                     generator=torch.Generator(device=device).manual_seed(0), num_workers=workers)
            out["images_per_s"][str(workers)] = {
                "train": round(rate(loader, args.batch_size, True, device), 1),
                "eval": round(rate(loader, args.batch_size, False, device), 1),
            }
            del loader
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
