"""X/Y/Z plots, LoRA strength sweeps and LoRA library previews (A1111's xyz_grid, made for LoRA previewing).

`axes` parses A1111's axis values, `plot` plans and runs a plot, `grid` draws grids and contact sheets,
`previews` renders `<stem>.preview.png` for a LoRA folder, `cli` adds the `xyz` and `previews` subcommands.
Planning and drawing are torch-free; only running touches the engine.
"""
from .axes import AXIS_KINDS, Axis, parse_axis
from .plot import (DEFAULT_STRENGTHS, MAX_CELLS, PlotPlan, PlotResult, parse_axes, plan_strength_sweep, plan_xyz,
                   run_plot)

__all__ = ["AXIS_KINDS", "Axis", "parse_axis", "parse_axes", "plan_xyz", "plan_strength_sweep", "run_plot",
           "PlotPlan", "PlotResult", "DEFAULT_STRENGTHS", "MAX_CELLS"]
