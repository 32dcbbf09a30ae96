"""A finer dimming sweep than ``lamppost-commands.yaml``, written as a Python trial.

Python trial files use the same runner API as YAML steps (``labctl.trial.script.TrialScript``):
``command``, ``wait``, ``measure``, ``set_conditions``, ``replay``, ``prompt``. Run it like any
trial: ``labctl run trials/lamppost_dimming_curve.py``.
"""

from labctl.trial.script import TrialScript

SPEC = {
    "trial": "lamppost-dimming-curve",
    "title": "Lamppost nodes — dimming curve in 10 % steps",
    "kind": "command-response",
    "preset": "lampposts",
    "speed": 1,
    "devices": {"nodes": {"role": "dut", "channel": "power", "min": 4}},
    "options": {
        "settle_s": 1,
        "power_by_model": {
            "LX-60": {"standby_w": 4.31, "rated_w": 62.11, "gamma": 1.0},
            "CL-90": {"standby_w": 6.81, "rated_w": 97.47, "gamma": 1.121},
        },
    },
    "criteria": {
        "success_rate": {"min": 0.95},
        "dimming_error_max_abs": {"max": 5},
    },
}


async def run(trial: TrialScript) -> None:
    """Sweep 0 → 100 % in 10 % steps, measuring the metered power at each."""
    trial.in_phase("sweep")
    for level in range(0, 101, 10):
        await trial.command("set_level", {"level": level}, settle=1)
        await trial.measure(2)
    trial.in_phase("off")
    await trial.command("set_level", {"level": 0})
