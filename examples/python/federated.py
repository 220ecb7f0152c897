"""Federated training across fleets that never share their cells: FedProx local training,
secure aggregation (SecAgg+) of the updates and differential privacy (distributed Gaussian
noise with an RDP accountant), all in one process with ``battery_fl.Simulation``.

Each synthetic fleet (an operator) has its own chemistry mix, climate and usage, so the
fleets are non-IID. Every round the coordinator samples the fleets, each trains BatLiNet on
its own cells from the global weights, clips its delta and adds its share of the noise; the
deltas are summed through secure aggregation, so the coordinator only learns their sum.

    python examples/python/federated.py            # 5 fleets, 15 rounds (a few minutes)
    python examples/python/federated.py --small    # seconds (run by `make py-test`)

Seeded: the same command prints the same numbers.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import battery_fl
from battery_fl import dp, synthetic


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="3 small fleets, 2 rounds")
    parser.add_argument("--rounds", type=int, help="rounds (default 15, small 2)")
    args = parser.parse_args()
    small = args.small

    # 1. the fleets: two thirds of each fleet's cells train, the rest are its test cells
    cycles = 20 if small else 100
    fleets = synthetic.generate_fleets(
        fleets=3 if small else 5, cells_per_fleet=6 if small else 24, cycles=cycles, seed=42
    )
    data = [
        (
            f"{f.id} ({f.climate})",
            [c for i, c in enumerate(f.cells) if i % 3 != 2],
            [c for i, c in enumerate(f.cells) if i % 3 == 2],
        )
        for f in fleets
    ]
    for name, train, test in data:
        chems = sorted({c.cathode or "?" for c in train + test})
        print(f"  {name:<28} {len(train):>2} train / {len(test):>2} test cells, {'/'.join(chems)}")

    # 2. the model every fleet trains (its settings and featurizer; the weights start from the seed)
    model = battery_fl.BatLiNet(
        featurizer=battery_fl.Featurizer(cycles=cycles, interp_dim=16 if small else 64),
        conv_channels=4 if small else 16,
        batch_size=16,
        inference_references=16,
        progress=False,
        seed=0,
    )

    # 3. the federation: FedProx, SecAgg+ (every 3 of a neighbourhood can unmask), and
    #    distributed DP. With a handful of fleets, noise that buys a small epsilon would drown
    #    the updates; the demo runs the machinery at a low noise multiplier and reports the
    #    (large) epsilon it really spends: meaningful fleet-level DP needs many more clients.
    noise_multiplier = 0.02
    privacy = {
        "noise_multiplier": noise_multiplier,
        "clipping_norm": 1.0,
        "mode": "distributed",
        "seed": 7,
    }
    sim = battery_fl.Simulation(
        data,
        model=model,
        rounds=args.rounds or (2 if small else 15),
        local_epochs=1 if small else 4,
        strategy="fed_prox",
        proximal_mu=0.01,
        secure_aggregation={"threshold": 2 if small else 3},
        dp=privacy,
        seed=1,
        inference_references=8,
    )
    mean, std = sim.label_transform
    print(f"shared label transform (summed securely): log-life mean {mean:.3f}, std {std:.3f}")
    t0 = time.perf_counter()
    while not sim.is_finished:
        r = sim.run_round()
        fleet = " ".join(f"{v:.0f}" for v in r["fleet_rmse"].values())
        print(
            f"round {r['round']:>2}: RMSE {r['global_rmse']:7.1f} cycles (per fleet {fleet}), "
            f"epsilon {r['epsilon']:.1f} at delta 1e-5"
        )
    print(f"{sim.round} rounds in {time.perf_counter() - t0:.1f} s")

    # 4. the accountant agrees: every fleet takes part in every round (sample rate 1)
    acc = dp.RdpAccountant()
    acc.step(noise_multiplier=noise_multiplier, sample_rate=1.0, steps=sim.round)
    assert np.isclose(acc.epsilon(1e-5), sim.history[-1]["epsilon"])

    # 5. the global model serves any fleet: here fleet 0's test cells, its own cells as references
    global_model = sim.global_model()
    name, train, test = data[0]
    pred = global_model.predict(test, references=train, k=min(8, len(train)))
    truth = np.array([c.recorded_cycle_life for c in test], dtype=float)
    print(
        f"global model on {name}: predicted {np.round(pred).astype(int).tolist()}, "
        f"true {truth.astype(int).tolist()}"
    )


if __name__ == "__main__":
    main()
