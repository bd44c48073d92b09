"""What the three trainers share: the run log, the CPU's name for model cards, and whether bf16 pays here."""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch


def log(run_dir: Path, msg: str) -> None:
    """Print `msg` with the time and append it to `run_dir/log.txt`."""
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    with open(run_dir / "log.txt", "a") as f:
        f.write(line + "\n")


def cpu_name() -> str:
    """The CPU's model name (for model cards and bench reports)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_has_bf16() -> bool:
    """True when the CPU multiplies bf16 in hardware (AVX-512 BF16 or AMX). Without it, oneDNN emulates bf16 and a
    training step under bf16 autocast ran 25x slower than in float32 here (AMD EPYC without AVX-512)."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def add_bf16_argument(p: argparse.ArgumentParser) -> None:
    """--bf16 / --no-bf16; neither: bf16 autocast exactly when the CPU has bf16 hardware (see `use_bf16`)."""
    p.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="bf16 autocast (default: on when the CPU has AVX-512 BF16 or AMX, else float32)",
    )


def use_bf16(args: argparse.Namespace) -> bool:
    return cpu_has_bf16() if args.bf16 is None else args.bf16
