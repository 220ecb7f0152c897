"""The BatLiNet architecture in plain PyTorch (method.md sections 3 and 10), for speed
comparison with `cargo run --release --features tch --example bench_model`.

One training step = forward of branch A on the batch and of branch B on every (target,
reference) pair, the published loss, backward, AdamW. No first-convolution sharing: this is the
straightforward implementation of the published method.

    .venv/bin/python scripts/bench_torch_step.py [--channels 6] [--cycles 100] [--dim 1000]
        [--batch 32] [--refs 2] [--steps 3] [--conv 32] [--threads N] [--infer-k 1,32,64]
"""

import argparse
import time

import torch
from torch import nn


class Encoder(nn.Module):
    def __init__(self, c_in: int, c: int, h: int, w: int) -> None:
        super().__init__()
        k1 = (min(3, h), min(3, w))
        h1, w1 = h - k1[0] + 1, w - k1[1] + 1
        p1 = (min(3, h1), min(3, w1))
        h1, w1 = h1 // p1[0], w1 // p1[1]
        k2 = (min(3, h1), min(3, w1))
        h2, w2 = h1 - k2[0] + 1, w1 - k2[1] + 1
        p2 = (min(3, h2), min(3, w2))
        h2, w2 = h2 // p2[0], w2 // p2[1]
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c, k1),
            nn.ReLU(),
            nn.AvgPool2d(p1),
            nn.Conv2d(c, c, k2),
            nn.ReLU(),
            nn.AvgPool2d(p2),
            nn.Conv2d(c, c, (h2, w2)),
            nn.ReLU(),
            nn.Flatten(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BatLiNet(nn.Module):
    def __init__(self, c_in: int, c: int, h: int, w: int) -> None:
        super().__init__()
        self.a = Encoder(c_in, c, h, w)
        self.b = Encoder(c_in, c, h, w)
        self.head = nn.Linear(c, 1, bias=False)


def main() -> None:
    p = argparse.ArgumentParser()
    for name, default in [
        ("channels", 6),
        ("cycles", 100),
        ("dim", 1000),
        ("batch", 32),
        ("refs", 2),
        ("steps", 3),
        ("conv", 32),
        ("threads", 0),
        ("infer-cells", 32),
    ]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--infer-k", default="1,32,64")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    c, h, w, b, s = a.channels, a.cycles, a.dim, a.batch, a.refs
    model = BatLiNet(c, a.conv, h, w)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    xa = torch.randn(b, c, h, w)
    raw = torch.randn(b, c, h, w)
    refs = torch.randn(b * s, c, h, w)
    y = torch.randn(b)
    y_ref = torch.randn(b * s)
    n_params = sum(t.numel() for t in model.parameters())
    print(
        f"threads {torch.get_num_threads()}, input ({c}, {h}, {w}), C = {a.conv}, params {n_params}"
    )

    def step() -> None:
        opt.zero_grad()
        ya = model.head(model.a(xa)).flatten()
        diff = raw.repeat_interleave(s, 0) - refs
        yb = (model.head(model.b(diff)).flatten() + y_ref).view(b, s).mean(1)
        loss = 0.5 * nn.functional.mse_loss(ya, y) + 0.5 * nn.functional.mse_loss(yb, y)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    print(f"train step (batch {b}, {s} refs): {(time.perf_counter() - t0) / a.steps:.3f} s")

    targets = torch.randn(a.infer_cells, c, h, w)
    with torch.no_grad():
        for k in [int(v) for v in a.infer_k.split(",")]:
            pool = torch.randn(k, c, h, w)
            t0 = time.perf_counter()
            for t in range(a.infer_cells):
                ya = model.head(model.a(targets[t : t + 1])).flatten()
                yb = (model.head(model.b(targets[t : t + 1] - pool)).flatten()).median()
                _ = 0.5 * ya + 0.5 * yb
            secs = time.perf_counter() - t0
            print(f"inference K = {k}: {a.infer_cells / secs:.2f} cells/s")


if __name__ == "__main__":
    main()
