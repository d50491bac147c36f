"""LoRA epochs: a kohya training run's epochs x strengths on the checkpoint the previews are made with.

`prompts` reads trainers' sample-prompt files (kohya .txt/.toml/.json, OneTrainer samples.json), `job` plans
and runs the grids (resumable, one PNG per cell), `publish` writes the winner's preview and A1111 sidecar,
`service` is what Service.run_epoch_grid delegates to. Planning and prompt reading are torch-free.
"""
from .job import EpochGridResult, EpochPlan, plan_epoch_grid, run_epoch_grid
from .prompts import PromptFile, SamplePrompt, load_prompt_file, parse_prompt_text
from .publish import PublishResult, publish

__all__ = ["EpochGridResult", "EpochPlan", "plan_epoch_grid", "run_epoch_grid", "PromptFile", "SamplePrompt",
           "load_prompt_file", "parse_prompt_text", "PublishResult", "publish"]
