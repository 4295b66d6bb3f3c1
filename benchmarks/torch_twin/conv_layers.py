#!/usr/bin/env python3
# PyTorch's time per convolution layer and direction (fwd, bwd-d, bwd-w) on YOLOv3-tiny-416's or
# ResNet-50's shapes, the same layer lists and layout as `bench_conv --cpu-only --layers ...` prints
# for ours, to compare per layer. Usage: conv_layers.py [--layers yolov3-tiny|resnet50] [--batch 4]
#        [--threads 2] [--reps 10]
import argparse
import time

import torch

# (name, Cin, H, Cout, k, stride, pad): bench_conv's kTinyLayers and kResNetLayers
RESNET = [
    ("conv1 7x7/2", 3, 224, 64, 7, 2, 3), ("layer1 3x3", 64, 56, 64, 3, 1, 1),
    ("layer1 1x1 up", 64, 56, 256, 1, 1, 0), ("layer2 3x3", 128, 28, 128, 3, 1, 1),
    ("layer2 1x1 down", 512, 28, 128, 1, 1, 0), ("layer3 3x3", 256, 14, 256, 3, 1, 1),
    ("layer3 1x1/2 ds", 512, 28, 1024, 1, 2, 0), ("layer4 3x3", 512, 7, 512, 3, 1, 1),
    ("layer4 1x1 up", 512, 7, 2048, 1, 1, 0),
]
TINY = [
    ("0 3x3 3>16", 3, 416, 16, 3, 1, 1), ("2 3x3 16>32", 16, 208, 32, 3, 1, 1),
    ("4 3x3 32>64", 32, 104, 64, 3, 1, 1), ("6 3x3 64>128", 64, 52, 128, 3, 1, 1),
    ("8 3x3 128>256", 128, 26, 256, 3, 1, 1), ("10 3x3 256>512", 256, 13, 512, 3, 1, 1),
    ("12 3x3 512>1024", 512, 13, 1024, 3, 1, 1), ("13 1x1 1024>256", 1024, 13, 256, 1, 1, 0),
    ("14 3x3 256>512", 256, 13, 512, 3, 1, 1), ("15 1x1 512>255", 512, 13, 255, 1, 1, 0),
    ("18 1x1 256>128", 256, 13, 128, 1, 1, 0), ("21 3x3 384>256", 384, 26, 256, 3, 1, 1),
    ("22 1x1 256>255", 256, 26, 255, 1, 1, 0),
]


def median_ms(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="yolov3-tiny", choices=["yolov3-tiny", "resnet50"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}, mkldnn "
          f"{torch.backends.mkldnn.is_available()}")
    print(f"{'layer':17s} {'dir':5s} {'torch ms':>9s} {'GFLOP/s':>9s}")
    total = 0.0
    for name, c, h, o, k, s, p in (TINY if a.layers == "yolov3-tiny" else RESNET):
        x = torch.rand(a.batch, c, h, h)
        w = torch.rand(o, c, k, k)
        ho = (h + 2 * p - k) // s + 1
        gy = torch.rand(a.batch, o, ho, ho)
        fl = 2.0 * a.batch * o * ho * ho * c * k * k
        conv = torch.ops.aten.convolution_backward
        args = (gy, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1)
        dirs = [("fwd", lambda: torch.nn.functional.conv2d(x, w, None, s, p)),
                ("bwd-d", lambda: conv(*args, [True, False, False])),
                ("bwd-w", lambda: conv(*args, [False, True, False]))]
        for d, fn in dirs:
            with torch.no_grad():
                ms = median_ms(fn, a.reps)
            total += ms
            print(f"{name:17s} {d:5s} {ms:9.2f} {fl / ms * 1e-6:9.1f}", flush=True)
    print(f"{'total':17s} {'':5s} {total:9.2f}")


if __name__ == "__main__":
    main()
