"""Our batch norm against PyTorch's on the same machine, in one run.

    .venv/bin/pip install torch numpy          # once
    cargo build --release
    .venv/bin/python benches/compare_torch.py [--device cpu|cuda] [--shapes ...] [--reps N]

Runs `bnorm bench --json` for our CPU and GPU paths, then times
`torch.nn.functional.batch_norm` (training forward, inference, and backward through autograd)
on the same shapes, and prints our time / PyTorch time per shape and pass (< 1 means we are
faster). On a CUDA machine `--device cuda` times PyTorch/cuDNN on the GPU.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = "32x10,256x64,1024x256,64x56x56x64,64x64x56x56:first,128x56x56x64,128x64x56x56:first"


def parse(label):
    dims, _, layout = label.partition(":")
    return [int(d) for d in dims.split("x")], layout or "last"


def torch_times(shape, layout, device, reps):
    c = shape[-1] if layout == "last" else shape[1]
    gen = torch.Generator().manual_seed(0)
    if layout == "last" and len(shape) > 2:
        # channels_last memory format: the same bytes as our NHWC tensor.
        nchw = [shape[0], shape[-1]] + shape[1:-1]
        x = torch.randn(nchw, generator=gen).to(device).contiguous(
            memory_format=torch.channels_last if len(shape) == 4 else torch.channels_last_3d)
    else:
        x = torch.randn(shape, generator=gen).to(device)
    dy = torch.randn_like(x)
    w = torch.ones(c, device=device, requires_grad=True)
    b = torch.zeros(c, device=device, requires_grad=True)
    rm = torch.zeros(c, device=device)
    rv = torch.ones(c, device=device)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def timed(fn):
        # At least `reps` runs and 0.2 s of them, as `bnorm bench` times its CPU path.
        fn()
        sync()
        out = []
        start = time.perf_counter()
        while len(out) < reps or (time.perf_counter() - start < 0.2 and len(out) < 10000):
            t = time.perf_counter()
            fn()
            sync()
            out.append(time.perf_counter() - t)
        return sorted(out)[len(out) // 2]

    with torch.no_grad():
        fwd = timed(lambda: torch.nn.functional.batch_norm(x, rm, rv, w, b, True, 0.01, 1e-3))
        inf = timed(lambda: torch.nn.functional.batch_norm(x, rm, rv, w, b, False, 0.01, 1e-3))
    xg = x.detach().requires_grad_(True)

    def backward():
        y = torch.nn.functional.batch_norm(xg, rm, rv, w, b, True, 0.01, 1e-3)
        y.backward(dy)

    # Backward alone: forward + backward minus forward with autograd on.
    both = timed(backward)

    def fwd_grad():
        torch.nn.functional.batch_norm(xg, rm, rv, w, b, True, 0.01, 1e-3)

    bwd = max(both - timed(fwd_grad), 1e-9)
    return {"forward": fwd, "inference": inf, "backward": bwd}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", default=DEFAULT)
    # 0: `bnorm bench` picks by size (more runs for small tensors); PyTorch runs at least 20
    # times and 0.2 s either way.
    ap.add_argument("--reps", type=int, default=0)
    ap.add_argument("--bnorm", default=os.path.join(ROOT, "target", "release", "bnorm"))
    args = ap.parse_args()

    # Shape by shape, ours then PyTorch then ours then PyTorch again, each side's better
    # median kept: both sides see the same moments of a shared machine (a VM's bandwidth moves
    # by a third between minutes), and neither gets a warmer cache than the other.
    def ours_for(label):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "ours.json")
            subprocess.run([args.bnorm, "bench", "--shapes", label, "--reps", str(args.reps),
                            "--json", out], check=True, stdout=sys.stderr)
            return json.load(open(out))

    rows = []
    device = None
    for label in args.shapes.split(","):
        shape, layout = parse(label)
        runs = []
        for _ in range(2):
            runs.append((ours_for(label), torch_times(shape, layout, args.device, max(args.reps, 20))))
        device = runs[0][0]["device"]
        for i, r in enumerate(runs[0][0]["results"]):
            tt = min(t[r["pass"]] for _, t in runs)
            cpu = min(o["results"][i]["cpu_s"] for o, _ in runs)
            gpus = [o["results"][i]["gpu_timestamp_s"] or o["results"][i]["gpu_wall_s"] for o, _ in runs]
            gpu = min(gpus) if all(g is not None for g in gpus) else None
            rows.append((label, r["pass"], tt, cpu, gpu))
    print(f"PyTorch {torch.__version__} on {args.device}, {torch.get_num_threads()} threads; "
          f"ours: {device}")
    print(f"{'shape':<22} {'pass':<10} {'torch ms':>10} {'our CPU ms':>11} {'CPU/torch':>10} "
          f"{'our GPU ms':>11} {'GPU/torch':>10}")
    for label, pss, tt, cpu, gpu in rows:
        print(f"{label:<22} {pss:<10} {tt * 1e3:>10.3f} {cpu * 1e3:>11.3f} "
              f"{cpu / tt:>10.2f} "
              f"{(gpu or float('nan')) * 1e3:>11.3f} {(gpu or float('nan')) / tt:>10.2f}")

if __name__ == "__main__":
    main()
