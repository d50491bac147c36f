"""`python -m creationmix samplers`: the sampler and schedule names this build accepts (from the one table)."""
from __future__ import annotations

from .params import DEFAULT_SCHEDULE, SAMPLER_ALIASES, SCHEDULE_ALIASES, TIMESTEP_SAMPLERS
from .sampler_options import OPTION_KEYS, sampler_takes


def cmd_samplers(args) -> int:
    print("Samplers (name\taliases\tAutomatic schedule\toptions):")
    for name, aliases in SAMPLER_ALIASES.items():
        auto = "(model timesteps)" if name in TIMESTEP_SAMPLERS else DEFAULT_SCHEDULE.get(name, "Uniform")
        opts = ", ".join(OPTION_KEYS[o][0] for o in OPTION_KEYS if o in sampler_takes(name))
        print(f"{name}\t{', '.join(aliases)}\t{auto}\t{opts}")
    print("\nSchedule types (label\taliases):")
    for label, aliases in SCHEDULE_ALIASES.items():
        print(f"{label}\t{', '.join(aliases)}")
    print("\nOld combined names such as 'DPM++ 2M Karras' or 'DPM++ 3M SDE Exponential' are accepted too.")
    return 0


def add_samplers_parser(sub) -> None:
    p = sub.add_parser("samplers", help="list samplers (with aliases) and schedule types")
    p.set_defaults(func=cmd_samplers)
