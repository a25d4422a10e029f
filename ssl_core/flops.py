"""FLOPs of a training step, counted on the meta device, and energy / CO2 estimates from wall time.

FLOPs come from torch's FlopCounterMode (matmuls, convolutions and attention; 1 MAC = 2 FLOPs;
elementwise ops, norms and optimiser updates are not counted; the views' crop and colour maps are
batched matmuls, so they are, at ~0.1% of a step). Count on the meta device: on real
CPU tensors the fused scaled-dot-product attention kernel is missed, on meta it is counted, and
nothing is computed. Energy = time x device power x PUE and CO2 = energy x grid intensity are
estimates from the stated tables below, never measurements.
"""
from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from ssl_core.checks import at_least, choose


def count_flops(fn: Callable, *args, **kwargs) -> int:
    """FLOPs of calling `fn(*args, **kwargs)` under FlopCounterMode (1 MAC = 2 FLOPs)."""
    with FlopCounterMode(display=False) as counter:
        fn(*args, **kwargs)
    return counter.get_total_flops()


def training_step_flops(step: Callable[..., torch.Tensor], *inputs) -> int:
    """FLOPs of one training step: `loss = step(*inputs)` then `loss.backward()`, both counted.

    Every pass the step makes (both views, a teacher or EMA encoder, a projector) is counted;
    the optimiser update is not. Build the modules and inputs on the meta device, e.g.
        with torch.device("meta"): model, x = build(), torch.empty(256, 3, 32, 32)
        training_step_flops(lambda x: model(x).square().mean(), x)
    Total training FLOPs = this x steps.
    """
    def forward_backward():
        step(*inputs).backward()
    return count_flops(forward_backward)


# --- wall time and memory ---------------------------------------------------------------------

@contextmanager
def wall_time_and_memory(device="cpu") -> Iterator[dict]:
    """Measure the block: yields a dict that gets "wall_s" and "peak_mem_mb" when the block ends.

    On CUDA the peak is the block's peak of allocated tensor memory; on the CPU it is the
    process's peak resident set size so far (Linux ru_maxrss), an upper bound for the block.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    stats: dict = {}
    start = time.perf_counter()
    yield stats
    if cuda:
        torch.cuda.synchronize(device)
    stats["wall_s"] = time.perf_counter() - start
    stats["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20 if cuda
                            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


# --- energy and CO2 estimates -----------------------------------------------------------------

# Device power in watts: the vendor's TDP / maximum board power, so a fully loaded device;
# estimates from it are upper bounds for partly idle devices.
DEVICE_WATTS = {
    "cpu-2core": 12.5,    # 2 of the 56 cores of a Xeon Platinum 8480+ (350 W TDP, Intel ARK): this machine kind
    "laptop-cpu": 15.0,   # Intel Core i5-1135G7 base power 15 W (Intel ARK)
    "t4": 70.0,           # NVIDIA T4 datasheet: 70 W
    "v100": 300.0,        # NVIDIA V100 SXM2 datasheet: 300 W
    "a100": 400.0,        # NVIDIA A100 SXM4 datasheet: 400 W
    "a100-pcie": 300.0,   # NVIDIA A100 80GB PCIe datasheet: 300 W
    "h100": 700.0,        # NVIDIA H100 SXM5 datasheet: up to 700 W
    "h100-pcie": 350.0,   # NVIDIA H100 PCIe datasheet: 350 W
    "h200": 700.0,        # NVIDIA H200 SXM datasheet: up to 700 W
    "rtx4090": 450.0,     # NVIDIA GeForce RTX 4090 specifications: 450 W total graphics power
}

# Carbon intensity of electricity generation, g CO2-eq per kWh, by ISO 3166-1 alpha-3 code (the
# codes codecarbon uses). Approximate 2023 annual averages from Ember's yearly electricity data
# as published by Our World in Data ("carbon intensity of electricity generation"), rounded;
# re-check against the current release before quoting one.
GRID_G_PER_KWH = {
    "WLD": 480.0,   # world
    "USA": 369.0,
    "CAN": 170.0,
    "GBR": 238.0,
    "FRA": 56.0,
    "DEU": 381.0,
    "SWE": 41.0,
    "NOR": 30.0,
    "CHN": 582.0,
    "IND": 713.0,
    "JPN": 485.0,
    "AUS": 549.0,
}


def energy_kwh(seconds: float, device_kind: str, count: int = 1, pue: float = 1.0) -> float:
    """Estimated energy of `count` devices of kind `device_kind` busy for `seconds`, times the
    data centre's power usage effectiveness `pue` (1.0 = device only). An estimate from DEVICE_WATTS.
    """
    choose("device_kind", device_kind, DEVICE_WATTS)
    at_least("seconds", seconds, 0)
    at_least("count", count, 1)
    at_least("pue", pue, 1.0)
    return seconds / 3600 * DEVICE_WATTS[device_kind] * count * pue / 1000


def co2_kg(kwh: float, country: str) -> float:
    """Estimated kg CO2-eq of `kwh` drawn from the grid of `country` (ISO alpha-3, see GRID_G_PER_KWH)."""
    choose("country", country, GRID_G_PER_KWH)
    at_least("kwh", kwh, 0)
    return kwh * GRID_G_PER_KWH[country] / 1000


def footprint(seconds: float, device_kind: str, country: str, count: int = 1, pue: float = 1.0) -> dict:
    """Energy and CO2 estimates of a run as columns for a result row, with their assumptions."""
    kwh = energy_kwh(seconds, device_kind, count, pue)
    return {"energy_kwh_est": kwh, "co2_kg_est": co2_kg(kwh, country), "device_kind": device_kind,
            "device_watts": DEVICE_WATTS[device_kind], "device_count": count, "pue": pue,
            "country": country, "grid_g_per_kwh": GRID_G_PER_KWH[country]}


def codecarbon_co2_kg(fn: Callable, country: str, *args, **kwargs) -> tuple[object, float]:
    """Run `fn(*args, **kwargs)` under codecarbon's OfflineEmissionsTracker for `country` (ISO alpha-3).

    Returns (fn's result, kg CO2-eq). An estimate: without a power sensor (no RAPL) codecarbon
    falls back on TDP defaults. codecarbon is optional and not a dependency of ssl_core.
    """
    try:
        from codecarbon import OfflineEmissionsTracker
    except ImportError as error:
        raise ImportError("codecarbon_co2_kg needs the optional package codecarbon (pip install codecarbon); "
                          "footprint() gives a table-based estimate without it") from error
    tracker = OfflineEmissionsTracker(country_iso_code=country, save_to_file=False, log_level="error")
    tracker.start()
    try:
        result = fn(*args, **kwargs)
    finally:
        kg = tracker.stop()
    return result, kg
