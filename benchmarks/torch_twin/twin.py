#!/usr/bin/env python3
# The PyTorch twin of bench_yolo_train / bench_resnet_train: builds the same network (a darknet .cfg,
# or a torchvision-style ResNet-50 written here) and times the same training step, printing img/s.
# Usage: twin.py --model yolov3-tiny|yolov3|yolov3-spp|PATH.cfg|resnet50 [--batch 4] [--size 416]
#        [--threads 2] [--device cpu|cuda] [--amp none|bf16|f16] [--steps 5] [--warmup 1]
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
CFG_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "models", "cfg"))


# ---- darknet .cfg
def parse_cfg(path):
    """[(type, {key: value})] in file order; values stay strings."""
    sections = []
    with open(path) as f:
        for no, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    raise ValueError(f"{path}:{no}: malformed section header {raw.strip()!r}")
                sections.append((line[1:-1].strip(), {}))
            else:
                if not sections or "=" not in line:
                    raise ValueError(f"{path}:{no}: expected key=value inside a section, got {raw.strip()!r}")
                k, v = line.split("=", 1)
                sections[-1][1][k.strip()] = v.strip()
    if not sections or sections[0][0] not in ("net", "network"):
        raise ValueError(f"{path}: the first section must be [net]")
    return sections


def ints(v):
    return [int(s) for s in v.split(",") if s.strip()]


class Act(nn.Module):
    def __init__(self, kind):
        super().__init__()
        if kind not in ("leaky", "mish", "swish", "linear", "relu", "logistic"):
            raise ValueError(f"unsupported darknet activation {kind!r}")
        self.kind = kind

    def forward(self, x):
        k = self.kind
        if k == "leaky":
            return F.leaky_relu(x, 0.1)
        if k == "mish":
            return F.mish(x)
        if k == "swish":
            return F.silu(x)
        if k == "relu":
            return F.relu(x)
        if k == "logistic":
            return torch.sigmoid(x)
        return x


class DarknetMaxPool(nn.Module):
    """darknet's geometry: out = (H + padding - size) // stride + 1, windows from -padding // 2,
    out-of-range cells never chosen (padded with -inf where they are read)."""

    def __init__(self, size, stride, padding):
        super().__init__()
        self.size, self.stride = size, stride
        self.before, self.after = padding // 2, padding - padding // 2

    def forward(self, x):
        h, w = x.shape[-2:]
        # Cells past the last window's end are never read: trim `after` to what the windows reach.
        need_h = (h + self.before + self.after - self.size) // self.stride * self.stride + self.size
        need_w = (w + self.before + self.after - self.size) // self.stride * self.stride + self.size
        ah, aw = need_h - h - self.before, need_w - w - self.before
        if self.before or ah > 0 or aw > 0:
            x = F.pad(x, (self.before, max(aw, 0), self.before, max(ah, 0)), value=-math.inf)
        return F.max_pool2d(x, self.size, self.stride)


class Darknet(nn.Module):
    def __init__(self, path):
        super().__init__()
        secs = parse_cfg(path)
        net = secs[0][1]
        c = int(net.get("channels", 3))
        self.layers = nn.ModuleList()
        self.kinds, self.refs, self.extra = [], [], []
        out_c = []
        for i, (kind, kv) in enumerate(secs[1:]):
            mod, refs, extra = nn.Identity(), [], None
            if kind == "convolutional":
                size, stride = int(kv.get("size", 1)), int(kv.get("stride", 1))
                pad = size // 2 if int(kv.get("pad", 0)) else int(kv.get("padding", 0))
                bn = int(kv.get("batch_normalize", 0)) != 0
                filters, groups = int(kv["filters"]), int(kv.get("groups", 1))
                mod = nn.Sequential()
                mod.add_module("Conv2d", nn.Conv2d(c, filters, size, stride, pad, groups=groups, bias=not bn))
                if bn:
                    # ultralytics/yolov3 archive settings, as ours (Note [Darknet batch norm])
                    mod.add_module("BatchNorm2d", nn.BatchNorm2d(filters, momentum=0.03, eps=1e-4))
                mod.add_module("act", Act(kv.get("activation", "logistic")))
                c = filters
            elif kind == "maxpool":
                stride = int(kv.get("stride", 1))
                size = int(kv.get("size", stride))
                mod = DarknetMaxPool(size, stride, int(kv.get("padding", size - 1)))
            elif kind == "upsample":
                extra = int(kv.get("stride", 2))
            elif kind == "shortcut":
                refs = [i + r if r < 0 else r for r in ints(kv["from"])]
                extra = Act(kv.get("activation", "linear"))
                mod = extra
            elif kind == "route":
                refs = [i + r if r < 0 else r for r in ints(kv["layers"])]
                extra = (int(kv.get("groups", 1)), int(kv.get("group_id", 0)))
                c = sum(out_c[r] for r in refs) // extra[0]
            elif kind == "yolo":
                extra = (len(ints(kv["mask"])) if "mask" in kv else int(kv.get("num", 1)), int(kv["classes"]))
            else:
                raise ValueError(f"{path}: unsupported section [{kind}] (layer {i})")
            self.layers.append(mod)
            self.kinds.append(kind)
            self.refs.append(refs)
            self.extra.append(extra)
            out_c.append(c)
        self.keep = [False] * len(self.kinds)
        for refs in self.refs:
            for r in refs:
                self.keep[r] = True

    def forward_heads(self, x):
        outs, heads = [None] * len(self.kinds), []
        for i, (kind, mod) in enumerate(zip(self.kinds, self.layers)):
            if kind in ("convolutional", "maxpool"):
                x = mod(x)
            elif kind == "upsample":
                x = F.interpolate(x, scale_factor=self.extra[i], mode="nearest")
            elif kind == "shortcut":
                x = mod(x + outs[self.refs[i][0]])
            elif kind == "route":
                g, gid = self.extra[i]
                parts = [outs[r] for r in self.refs[i]]
                if g > 1:
                    parts = [p.chunk(g, 1)[gid] for p in parts]
                x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            elif kind == "yolo":
                heads.append((x, self.extra[i]))
            if self.keep[i]:
                outs[i] = x
        return heads

    def forward(self, x):
        # (B, A(5+C), H, W) -> (B, A*H*W, 5+C) per head, concatenated: ours' Darknet::forward layout.
        rows = []
        for h, (a, classes) in self.forward_heads(x):
            b, _, gh, gw = h.shape
            rows.append(h.view(b, a, 5 + classes, gh, gw).permute(0, 1, 3, 4, 2).reshape(b, a * gh * gw, 5 + classes))
        return torch.cat(rows, 1)


# ---- ResNet-50 (torchvision's layout: stride on the 3x3 of each bottleneck, zero-init off)
class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        cout = width * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet50(nn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        blocks, cin = [], 64
        for width, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
            for j in range(n):
                blocks.append(Bottleneck(cin, width, stride if j == 0 else 1))
                cin = width * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.blocks(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---- the timed step
def build(name):
    if name == "resnet50":
        return ResNet50()
    path = name if os.path.isfile(name) else os.path.join(CFG_DIR, name if name.endswith(".cfg") else name + ".cfg")
    if not os.path.isfile(path):
        raise SystemExit(f"twin: no cfg {name!r} (looked for {path})")
    return Darknet(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="yolov3-tiny")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--size", type=int, default=None, help="416 for darknet, 224 for resnet50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", default="none", choices=["none", "bf16", "f16"])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    a = ap.parse_args()
    is_resnet = a.model == "resnet50"
    size = a.size or (224 if is_resnet else 416)
    dev = torch.device(a.device)
    torch.set_num_threads(a.threads)
    if dev.type == "cuda":
        # ours: f32 convolutions and GEMMs without TF32, cuDNN algorithms chosen by timing
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build(a.model).to(dev).train()
    nparams = sum(p.numel() for p in model.parameters())
    x = torch.rand(a.batch, 3, size, size, device=dev)
    if is_resnet:
        # ours' bench_resnet_train: cross entropy on random labels, SGD lr 0.01, momentum 0.9, wd 1e-4
        target = torch.randint(0, 1000, (a.batch,), device=dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        loss_fn = lambda out: F.cross_entropy(out, target)
    else:
        # ours' bench_yolo_train: the surrogate loss 1e-3 * mean(out^2) of the raw head outputs,
        # SGD lr 1e-4, momentum 0.937, nesterov, weight decay 5e-4
        opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.937, nesterov=True, weight_decay=5e-4)
        loss_fn = lambda out: 1e-3 * out.float().square().mean()
    amp_dtype = {"bf16": torch.bfloat16, "f16": torch.float16}.get(a.amp)
    use_scaler = a.amp == "f16" and dev.type == "cuda"
    if hasattr(torch, "amp") and hasattr(torch.amp, "GradScaler"):
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    else:
        scaler = torch.cuda.amp.GradScaler(enabled=use_scaler)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            loss = loss_fn(model(x))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    for _ in range(a.warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    sync()
    dt = time.perf_counter() - t0
    img_s = a.batch * a.steps / dt
    print(f"twin model={a.model} device={dev} amp={a.amp} batch={a.batch} size={size} threads={torch.get_num_threads()} "
          f"params={nparams} torch={torch.__version__} step_img_s={img_s:.3f} ms_step={dt * 1e3 / a.steps:.1f} "
          f"loss={loss.item():.6g}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
