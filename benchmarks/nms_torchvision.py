"""The torchvision reference of benchmarks/nms.cpp: times torchvision.ops.nms on the boxes bench_nms wrote.

Usage: nms_torchvision.py BOXES.bin IOU_THRESHOLD KEEP.txt
BOXES.bin: int64 n, then n x 4 float32 (x1, y1, x2, y2), then n float32 scores (little-endian).
Prints "<median ms> <kept>" and writes the kept indices to KEEP.txt. Needs Debian's python3-torchvision
(apt-get install python3-torchvision); runs on 2 threads like the C++ side.
"""
import statistics
import struct
import sys
import time

import numpy as np
import torch
import torchvision


def main():
    path, thr, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    torch.set_num_threads(2)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<q", f.read(8))
        boxes = torch.from_numpy(np.frombuffer(f.read(16 * n), dtype=np.float32).reshape(n, 4).copy())
        scores = torch.from_numpy(np.frombuffer(f.read(4 * n), dtype=np.float32).copy())
    reps = 3 if n >= 100000 else 7 if n >= 10000 else 31
    keep = torchvision.ops.nms(boxes, scores, thr)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        keep = torchvision.ops.nms(boxes, scores, thr)
        times.append((time.perf_counter() - t0) * 1e3)
    with open(out, "w") as f:
        f.write("\n".join(str(int(i)) for i in keep.tolist()))
    print(f"{statistics.median(times):.4f} {keep.numel()}")


if __name__ == "__main__":
    main()
