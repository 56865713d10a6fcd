"""The default job (1000 x 20 -> Dense(10) -> BatchNorm -> ReLU -> Dense(3) -> softmax, Adam,
batch 32, 5 epochs) timed in our engine (GPU and CPU paths), Keras and PyTorch, in one run.

    cargo build --release
    .venv/bin/python benches/compare_train.py [--epochs 5] [--repeat 3] [--device cpu|cuda]

Prints the median wall time of fit and per training step for each, and the ratios ours / theirs
(< 1: we are faster). Keras runs on whichever backend KERAS_BACKEND names (torch by default
here); either framework is skipped when it is not installed.
"""
import argparse
import os
import re
import statistics
import subprocess
import time

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS, FEATURES, HIDDEN, CLASSES = 1000, 20, 10, 3


def data():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CLASSES, FEATURES)) * 2.0
    labels = rng.integers(0, CLASSES, ROWS)
    x = (centres[labels] + rng.standard_normal((ROWS, FEATURES))) * np.tile([0.5, 3, 10, 40], 5)
    return x.astype(np.float32), labels


def ours(device, epochs, bnorm):
    out = subprocess.run([bnorm, "train", "--epochs", str(epochs),
                          "--device", device], capture_output=True, text=True, check=True).stdout
    m = re.search(r"with BN: ([0-9.]+) s in fit, ([0-9.]+) ms per step", out)
    return float(m.group(1))


def keras_fit(x, y, epochs, device):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(HIDDEN),
                              keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
                              keras.layers.Dense(CLASSES), keras.layers.Activation("softmax")])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    onehot = np.eye(CLASSES, dtype=np.float32)[y]
    t = time.perf_counter()
    model.fit(x, onehot, batch_size=32, epochs=epochs, verbose=0)
    return time.perf_counter() - t


def torch_fit(x, y, epochs, device):
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(FEATURES, HIDDEN),
                                torch.nn.BatchNorm1d(HIDDEN, eps=1e-3, momentum=0.01),
                                torch.nn.ReLU(), torch.nn.Linear(HIDDEN, CLASSES)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    xt = torch.tensor(x, device=device)
    yt = torch.tensor(y, device=device)
    loss_fn = torch.nn.CrossEntropyLoss()
    t = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(ROWS, device=device)
        total = torch.zeros((), device=device)
        for s in range(0, ROWS, 32):
            idx = perm[s:s + 32]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
        float(total)  # one readback per epoch, as ours
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bnorm", default=os.path.join(ROOT, "target", "release", "bnorm"))
    args = ap.parse_args()
    x, y = data()
    steps = -(-ROWS // 32) * args.epochs
    runs = {
        "ours (GPU path)": lambda: ours("gpu", args.epochs, args.bnorm),
        "ours (CPU path, f64 reference)": lambda: ours("cpu", args.epochs, args.bnorm),
    }
    try:
        import keras  # noqa: F401
        runs["Keras " + keras.__version__ + " (" + os.environ.get("KERAS_BACKEND", "torch") + ")"] = \
            lambda: keras_fit(x, y, args.epochs, args.device)
    except ImportError:
        print("Keras not installed: skipped")
    try:
        import torch
        runs[f"PyTorch {torch.__version__} ({args.device})"] = \
            lambda: torch_fit(x, y, args.epochs, args.device)
    except ImportError:
        print("PyTorch not installed: skipped")
    times = {}
    for name, fn in runs.items():
        fn()  # warm-up (pipeline compilation, allocator, imports)
        times[name] = statistics.median(fn() for _ in range(args.repeat))
    refs = [(n, t) for n, t in times.items() if not n.startswith("ours")]
    print(f"{ROWS} x {FEATURES}, batch 32, {args.epochs} epochs = {steps} steps; median of {args.repeat}")
    print(f"{'':<36} {'fit s':>8} {'ms/step':>8}" + "".join(f" {'/ ' + n.split()[0]:>10}" for n, _ in refs))
    for name, t in times.items():
        print(f"{name:<36} {t:>8.3f} {t * 1e3 / steps:>8.3f}" + "".join(f" {t / r:>10.2f}" for _, r in refs))


if __name__ == "__main__":
    main()
