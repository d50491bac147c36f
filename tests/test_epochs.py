"""LoRA epochs: kohya series in the library, trainers' prompt files, the epochs x strengths grid on the tiny
checkpoint (cells == single txt2img runs), resume, publishing the preview + A1111 sidecar, the CLI."""
from __future__ import annotations

import itertools
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from creationmix.engine import Engine
from creationmix.epochs.job import LORA_SLOT, plan_epoch_grid
from creationmix.epochs.prompts import load_prompt_file, parse_prompt_text
from creationmix.epochs.publish import activation_text
from creationmix.epochs.service import run_series_epochs
from creationmix.errors import InvalidParameter, LoraError
from creationmix.infotext import parse_infotext
from creationmix.lora.library import LoraLibrary
from creationmix.lora.series import find_series, group_series
from creationmix.params import GenerationParams
from creationmix.paths import Folders
from creationmix.pnginfo import read_parameters
from creationmix.presets import PRESETS_DIR, find_preset
from lora_fixtures import KOHYA_METADATA, kohya_lora, write_lora, write_sidecar

STEPS_PER_EPOCH = 400
TXT = """# sample prompts written by kohya_ss
1girl, solo, smile --n lowres, bad anatomy --w 64 --h 64 --d 1234 --s 2 --l 6.5 --ss k_euler_a

 # a leading space: sd-scripts reads this line as a prompt (it tests line[0])
"""
_names = itertools.count()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, tiny_ckpt_dir):
    root = tmp_path_factory.mktemp("epochs_data")
    folders = Folders(root)
    folders.ensure()
    src = tiny_ckpt_dir / "models" / "Stable-diffusion"
    for p in src.iterdir():
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, folders.checkpoint_dirs[0] / p.name)
    return root


@pytest.fixture(scope="module")
def engine(data_dir):
    return Engine(Folders(data_dir), device="cpu", precision="fp32")


def write_series(folder, tiny_model, base: str, epochs=(1, 2, 3), final_epoch: int | None = 4, clip_skip=2):
    """kohya's output: <base>-00000N.safetensors per saved epoch and <base>.safetensors, with ss_* headers."""
    unet, te = tiny_model.pipe.unet, tiny_model.pipe.text_encoder
    files = []
    for n in list(epochs) + ([final_epoch] if final_epoch else []):
        final = n == final_epoch
        meta = dict(KOHYA_METADATA, ss_output_name=base, ss_epoch=str(n), ss_steps=str(n * STEPS_PER_EPOCH),
                    ss_clip_skip=str(clip_skip))
        name = f"{base}.safetensors" if final else f"{base}-{n:06d}.safetensors"
        # Later epochs: a larger delta, so the grid's rows differ visibly.
        files.append(write_lora(folder / name, kohya_lora(unet, te, seed=n, scale=0.1 * n, conv=False), meta))
    return files


@pytest.fixture
def series(data_dir, tiny_model):
    base = f"tinyrun{next(_names)}"
    folder = Folders(data_dir).lora_dirs[0] / base
    write_series(folder, tiny_model, base)
    (folder / "sample").mkdir()
    (folder / "sample" / "prompt.txt").write_text(TXT.splitlines()[1] + "\n")
    return base, folder


def arr(im) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.int16)


# -- series ----------------------------------------------------------------------------------------------------
def test_library_groups_a_kohya_series(tmp_path, tiny_model):
    write_series(tmp_path / "run", tiny_model, "style", epochs=(10, 2, 1))
    write_lora(tmp_path / "run" / "other.safetensors", kohya_lora(tiny_model.pipe.unet, None, conv=False))
    write_lora(tmp_path / "lone.safetensors", kohya_lora(tiny_model.pipe.unet, None, conv=False))
    lib = LoraLibrary(tmp_path)
    (s,) = lib.series()
    assert s.name == "style" and s.folder == tmp_path / "run"
    assert [e.name for e in s.epochs] == ["style-000001", "style-000002", "style-000010", "style"]  # numeric order
    assert [e.epoch for e in s.epochs] == [1, 2, 10, 4] and s.final.name == "style" and s.final.final
    assert s.epochs[2].steps == 4000 and lib.resolve("style-000002").epoch == 2
    assert s.epochs[0].label == "epoch 1 (400 steps)" and s.final.label == "final: epoch 4 (1600 steps)"
    assert s.find("2").name == "style-000002" and s.find("000010").name == "style-000010"
    assert s.find("final") is s.final and s.find("last") is s.final and s.find("style-000001") is s.epochs[0]
    with pytest.raises(LoraError, match="has no epoch '7'.*1, 2, 10, final"):
        s.find("7")
    assert find_series(lib, "style-000002") .name == "style"
    with pytest.raises(LoraError, match="not part of a kohya epoch series"):
        find_series(lib, "lone")
    assert group_series([i for i in lib if i.name != "style"])[0].final is None  # an unfinished run is a series


# -- prompt files ----------------------------------------------------------------------------------------------
def test_kohya_txt_every_option_comments_and_sampler_warning(tmp_path):
    path = tmp_path / "prompt.txt"
    path.write_text(TXT + "a cat --W 515 --H 70 --s 5000 --ss dpm++_2m_karras --g 3.5 --cn x.png\n")
    pf = load_prompt_file(path)
    assert pf.kind == "kohya-txt" and len(pf.prompts) == 3
    p = pf.prompts[0]
    assert (p.prompt, p.negative_prompt, p.width, p.height, p.seed, p.steps, p.cfg_scale) == (
        "1girl, solo, smile", "lowres, bad anatomy", 64, 64, 1234, 2, 6.5)
    assert (p.sampler, p.schedule, p.source_sampler) == ("Euler a", "Automatic", "k_euler_a")
    assert pf.prompts[1].prompt.startswith("# a leading space")
    cat = pf.prompts[2]
    # sd-scripts: sizes rounded down to a multiple of 8, steps clamped to 1000, options case-insensitive.
    assert (cat.width, cat.height, cat.steps, cat.sampler, cat.schedule) == (512, 64, 1000, "DPM++ 2M", "Karras")
    assert any("line 2" in w and "'k_euler_a'" in w and "'Euler a'" in w for w in pf.warnings)
    assert any("dpm++_2m_karras" in w and "DPM++ 2M' Karras" in w for w in pf.warnings)
    assert any("--g" in w and "FLUX" in w for w in pf.warnings) and any("--cn x.png" in w for w in pf.warnings)
    unknown = parse_prompt_text("x --ss dpm_2_a\ny --ss nonsense\nz --ss dpmsingle\nw --ss pndm\n", "p.txt")
    # the same method; sd-scripts' own DDIM fallback; the nearest one; PNDM is PLMS
    assert [q.sampler for q in unknown.prompts] == ["DPM2 a", "DDIM", "DPM++ 2M", "PLMS"]
    assert any("nearest" in w for w in unknown.warnings) and any("falls back to DDIM" in w for w in unknown.warnings)
    a1111 = parse_prompt_text("v --ss DPM++ 2M SDE Karras", "p.txt")
    assert (a1111.prompts[0].sampler, a1111.prompts[0].schedule) == ("DPM++ 2M SDE", "Karras")
    assert "A1111 name, used as is" in a1111.warnings[0]


def test_kohya_toml_and_json_and_onetrainer(tmp_path):
    toml = tmp_path / "prompts.toml"
    toml.write_text('[prompt]\nnegative_prompt = "lowres"\nwidth = 64\nheight = 64\nscale = 5\nsample_steps = 3\n\n'
                    '[[prompt.subset]]\nprompt = "1girl"\nseed = 7\n\n'
                    '[[prompt.subset]]\nprompt = "1boy"\nwidth = 128\nsample_sampler = "euler"\n')
    pf = load_prompt_file(toml)
    a, b = pf.prompts
    assert (a.prompt, a.negative_prompt, a.width, a.cfg_scale, a.steps, a.seed) == ("1girl", "lowres", 64, 5.0, 3, 7)
    assert (b.prompt, b.width, b.height, b.sampler) == ("1boy", 128, 64, "Euler")
    js = tmp_path / "prompts.json"
    js.write_text(json.dumps(["a cat --d 3", {"prompt": "a dog", "scale": 4, "sample_steps": 9}]))
    c, d = load_prompt_file(js).prompts
    assert (c.prompt, c.seed, d.prompt, d.cfg_scale, d.steps) == ("a cat", 3, "a dog", 4.0, 9)
    ot = tmp_path / "samples.json"
    ot.write_text(json.dumps([
        {"enabled": True, "prompt": "1girl", "negative_prompt": "bad", "width": 64, "height": 96, "seed": 42,
         "random_seed": False, "diffusion_steps": 4, "cfg_scale": 6.0, "noise_scheduler": "DPMPP_KARRAS",
         "text_encoder_1_layer_skip": 1},
        {"enabled": False, "prompt": "skipped"},
        {"enabled": True, "prompt": "random", "seed": 1, "random_seed": True, "noise_scheduler": "EULER_A"}]))
    op = load_prompt_file(ot)
    assert op.kind == "onetrainer" and [p.prompt for p in op.prompts] == ["1girl", "random"]
    e, f = op.prompts
    assert (e.negative_prompt, e.width, e.height, e.seed, e.steps, e.cfg_scale, e.clip_skip) == (
        "bad", 64, 96, 42, 4, 6.0, 2)
    assert (e.sampler, e.schedule, f.seed, f.sampler) == ("DPM++ 2M", "Karras", None, "Euler a")
    for text, name, msg in (("[prompt]\nwidth = 64\n", "x.toml", r"\[\[prompt.subset\]\]"),
                            ('{"a": 1}', "x.json", "JSON list"),
                            ("", "x.txt", "no prompts"), ("a", "x.yaml", "unknown kind")):
        with pytest.raises(InvalidParameter, match=msg):
            parse_prompt_text(text, name)
    assert any("--w big ignored" in w for w in parse_prompt_text("x --w big", "x.txt").warnings)  # as sd-scripts
    with pytest.raises(InvalidParameter, match="entry 1: width must be a whole number"):
        parse_prompt_text(json.dumps([{"prompt": "a", "width": 64.5}]), "x.json")


def test_preset_fills_what_the_file_leaves_out(tmp_path, tiny_model):
    write_series(tmp_path / "run", tiny_model, "style")
    s = LoraLibrary(tmp_path).series()[0]
    pf = parse_prompt_text("1girl --w 64 --h 64 --s 2\n1boy --n plain --l 4 --d 9\n", "p.txt")
    preset = find_preset(PRESETS_DIR, "in-general")
    plan = plan_epoch_grid(s, pf.prompts, preset=preset, strengths="0.8", out_dir=tmp_path / "out")
    a, b = (g.cells[0].params for g in plan.prompts)
    card = preset.to_params()
    assert a.prompt == "1girl <lora:style-000001:0.8>" and (a.width, a.steps) == (64, 2)
    assert a.enable_hires and a.clip_skip == 2 and a.negative_prompt == card.negative_prompt  # from the card
    assert "EasyNegative" in a.negative_prompt and a.sampler == card.sampler and a.seed == card.seed
    assert b.negative_prompt == "plain" and b.cfg_scale == 4 and b.seed == 9 and b.width == card.width
    # No preset: sd-scripts' sampling defaults and the LoRA's own clip skip.
    bare = plan_epoch_grid(s, pf.prompts[1:], strengths=[1], out_dir=tmp_path / "out").prompts[0].cells[0].params
    assert (bare.steps, bare.width, bare.cfg_scale, bare.sampler, bare.clip_skip) == (30, 512, 4.0, "DDIM", 2)
    # The card's own prompt: its LoRA slot takes the epoch.
    slot = plan_epoch_grid(s, None, preset=find_preset(PRESETS_DIR, "lora-preview"), strengths=[0, 0.6],
                           epochs=["final"], out_dir=tmp_path / "out").prompts[0]
    assert LORA_SLOT in slot.template and slot.cells[1].params.prompt.endswith("solo, <lora:style:0.6>")
    assert "<lora:" not in slot.cells[0].params.prompt and slot.cells[0].path.name.startswith("base_w0_")
    with pytest.raises(InvalidParameter, match="p.txt line 1: width"):
        plan_epoch_grid(s, parse_prompt_text("x --w 8000", "p.txt").prompts, out_dir=tmp_path)


# -- the grid on the engine --------------------------------------------------------------------------------------
def test_cells_equal_single_txt2img_runs_and_grid_layout(engine, series, tmp_path):
    base, folder = series
    res = run_series_epochs(engine, base, prompts_file=folder / "sample" / "prompt.txt", strengths="0.5, 1",
                            epochs=["1", "final"], out_dir=tmp_path)  # 4 cells: the CPU is shared and slow
    assert not res.interrupted and res.count("done") == 4 and res.count("failed") == 0
    assert any("'k_euler_a'" in w for w in res.warnings)
    assert [e.name for e in res.plan.entries] == [f"{base}-000001", base]
    assert {c.seed for c in res.cells} == {1234}  # every cell shares the seed
    for cell in res.cells[1:3]:
        params, meta = parse_infotext(read_parameters(cell.path))
        assert params.prompt == f"1girl, solo, smile <lora:{cell.entry.name}:{cell.strength:g}>"
        assert meta["Lora hashes"].startswith(f"{cell.entry.name}: ") and params.seed == 1234
        single = GenerationParams(prompt=params.prompt, negative_prompt="lowres, bad anatomy", steps=2,
                                  sampler="Euler a", cfg_scale=6.5, seed=1234, width=64, height=64, clip_skip=2)
        # The infotext names the schedule Automatic resolves to (Uniform for Euler a), as A1111 writes it.
        assert params.replace(schedule="Automatic") == single
        again = engine.generate(single, save=False)
        assert (arr(again.images[0]) == arr(Image.open(cell.path))).all()
    # Epochs differ from each other (the rows are not one LoRA four times).
    firsts = [arr(Image.open(c.path)) for c in res.cells if c.strength == 1]
    assert all((a != b).any() for a, b in zip(firsts, firsts[1:]))
    (grid_path,) = res.grid_paths
    grid = Image.open(grid_path).convert("RGB")
    for c in res.cells:  # rows = epochs, columns = strengths, cells in the bottom-right block
        r, k = res.plan.entries.index(c.entry), res.plan.strengths.index(c.strength)
        x0, y0 = grid.width - (2 - k) * 64, grid.height - (2 - r) * 64
        assert (arr(grid.crop((x0, y0, x0 + 64, y0 + 64))) == arr(Image.open(c.path))).all()
    extra = dict(parse_infotext(read_parameters(grid_path)).ignored)
    assert extra["Script"] == "LoRA epochs" and extra["X Values"] == "0.5, 1"
    assert extra["Y Values"] == "e000001, final"
    # The whole series is planned in epoch order, labelled with the header's epochs and steps.
    plan = plan_epoch_grid(res.series, None, preset=find_preset(PRESETS_DIR, "lora-preview"), out_dir=tmp_path)
    assert [e.label for e in plan.entries] == ["epoch 1 (400 steps)", "epoch 2 (800 steps)", "epoch 3 (1200 steps)",
                                               "final: epoch 4 (1600 steps)"]
    assert len(plan.cells) == 4 * 3 and plan.strengths == [0.6, 0.8, 1.0]


def test_resume_skips_existing_cells_and_keeps_a_random_seed(engine, series, tmp_path, monkeypatch):
    base, folder = series
    prompts = tmp_path / "p.txt"
    prompts.write_text("1girl --w 64 --h 64 --s 2 --ss euler\n")  # no --d: a random seed, drawn once
    kw = dict(prompts_file=prompts, strengths=[1], epochs=["1", "final"], out_dir=tmp_path / "out")
    first = run_series_epochs(engine, base, **kw)
    seed = first.cells[0].seed
    assert first.count("done") == 2 and {c.seed for c in first.cells} == {seed}
    assert json.loads((first.plan.prompts[0].folder / "job.json").read_text())["seed"] == seed
    calls = []
    orig = engine.generate
    monkeypatch.setattr(engine, "generate", lambda *a, **k: calls.append(a[0]) or orig(*a, **k))
    again = run_series_epochs(engine, base, **kw)
    assert calls == [] and again.count("skipped") == 2 and again.cells[0].seed == seed
    assert len(again.grid_paths) == 1
    first.cells[1].path.unlink()
    more = run_series_epochs(engine, base, **kw)
    assert more.count("skipped") == 1 and more.count("done") == 1 and len(calls) == 1
    assert calls[0].seed == seed and calls[0].prompt.endswith(f"<lora:{base}:1>")


def test_interrupt_keeps_finished_cells_then_resumes(engine, series, tmp_path):
    from creationmix.jobs import Control
    base, folder = series
    control = Control()

    def progress(jp):
        if jp.done >= 1 and jp.event is None:
            control.interrupt()
    kw = dict(prompts_file=folder / "sample" / "prompt.txt", strengths=[1], epochs=["1", "final"],
              out_dir=tmp_path)
    first = run_series_epochs(engine, base, control=control, progress=progress, **kw)
    assert first.interrupted and first.count("done") == 1 and first.count("pending") == 1
    assert first.grid_paths  # drawn with a grey box for the missing cell
    second = run_series_epochs(engine, base, **kw)
    assert second.count("skipped") == 1 and second.count("done") == 1


# -- publishing ------------------------------------------------------------------------------------------------
def test_publish_writes_preview_and_a1111_sidecar_without_clobbering(engine, series, tmp_path):
    base, folder = series
    kw = dict(prompts_file=folder / "sample" / "prompt.txt", strengths=[0.8], epochs=["2"], out_dir=tmp_path)
    res = run_series_epochs(engine, base, publish="2:0.8", **kw)
    pub = res.published
    stem = folder / f"{base}-000002"
    preview, side = stem.with_name(stem.name + ".preview.png"), stem.with_suffix(".json")
    assert pub.preview == preview and pub.preview_written and preview in res.files and side in res.files
    cell = res.cells[0]
    assert (arr(Image.open(preview)) == arr(Image.open(cell.path))).all()
    assert read_parameters(preview) == read_parameters(cell.path)
    data = json.loads(side.read_text(encoding="utf-8"))
    assert data["preferred weight"] == 0.8 and data["sd version"] == "SD1"
    assert data["activation text"] == "tinystyle, 1girl, solo"  # the most frequent ss_tag_frequency tags
    assert f"{base}: epoch 2, 800 steps" in data["description"] and data["notes"] == "" \
        and data["negative text"] == ""
    # What A1111's reader (and ours) makes of it.
    lib = LoraLibrary(folder)
    info = lib.resolve(f"{base}-000002")
    assert info.preferred_weight == 0.8 and info.activation_text == "tinystyle, 1girl, solo"
    assert info.sd_version == "SD1" and info.preview == preview

    # A user's values are kept without force; keys we do not write are always kept.
    write_sidecar(stem.with_suffix(".safetensors"), preferred_weight=0.65, activation_text="mytrigger",
                  description="", sd_version="Unknown")
    mine = json.loads(side.read_text()) | {"notes": "my notes"}
    side.write_text(json.dumps(mine))
    Image.new("RGB", (8, 8), (1, 2, 3)).save(preview)
    before = preview.read_bytes()
    kept = run_series_epochs(engine, base, publish="2:1", **kw).published  # 1 is added to the grid
    data = json.loads(side.read_text())
    assert data["preferred weight"] == 0.65 and data["activation text"] == "mytrigger" and data["notes"] == "my notes"
    assert data["sd version"] == "SD1" and "chosen at strength 1" in data["description"]  # unset values filled
    assert preview.read_bytes() == before and not kept.preview_written
    assert set(kept.kept) == {"preferred weight", "activation text"}
    assert any("kept your 'preferred weight'" in n for n in kept.notes)
    forced = run_series_epochs(engine, base, publish="2:1", force=True, **kw).published
    data = json.loads(side.read_text())
    assert data["preferred weight"] == 1.0 and data["activation text"] == "tinystyle, 1girl, solo"
    assert data["notes"] == "my notes" and preview.read_bytes() != before and forced.preview_written


def test_publish_png_name_civitai_words_and_bad_keys(engine, series, tmp_path):
    base, folder = series
    civitai = folder / f"{base}.civitai.info"
    civitai.write_text(json.dumps({"trainedWords": ["tinyrun style", "glow"], "baseModel": "SD 1.5"}))
    before = civitai.read_bytes()
    kw = dict(prompts_file=folder / "sample" / "prompt.txt", strengths=[1], epochs=["final"], out_dir=tmp_path)
    pub = run_series_epochs(engine, base, publish="final:1", preview_name="png", **kw).published
    assert pub.preview == folder / f"{base}.png" and pub.preview.is_file()
    assert json.loads((folder / f"{base}.json").read_text())["activation text"] == "tinyrun style, glow"
    assert civitai.read_bytes() == before  # read, never written
    with pytest.raises(InvalidParameter, match="EPOCH:STRENGTH"):
        run_series_epochs(engine, base, publish="final", **kw)
    with pytest.raises(LoraError, match="has no epoch '9'"):
        run_series_epochs(engine, base, publish="9:1", **kw)
    with pytest.raises(InvalidParameter, match="preview name 'jpg'"):
        run_series_epochs(engine, base, publish="final:1", preview_name="jpg", **kw)
    assert activation_text(LoraLibrary(folder).resolve(f"{base}-000001"), None) == "tinystyle, 1girl, solo"


def test_unreadable_sidecar_is_not_replaced_without_force(engine, series, tmp_path):
    base, folder = series
    (folder / f"{base}.json").write_text("{not json")
    kw = dict(prompts_file=folder / "sample" / "prompt.txt", strengths=[1], epochs=["final"], out_dir=tmp_path)
    with pytest.raises(LoraError, match="not readable JSON"):
        run_series_epochs(engine, base, publish="final:1", **kw)
    assert (folder / f"{base}.json").read_text() == "{not json"


# -- CLI ---------------------------------------------------------------------------------------------------------
def test_cli_epochs_on_a_kohya_output_folder(data_dir, tiny_model, tmp_path, capsys):
    from creationmix.cli import main
    run = tmp_path / "kohya_output"
    write_series(run, tiny_model, "clirun", epochs=(1,), final_epoch=2)
    (run / "sample").mkdir()
    toml = run / "sample" / "prompt.toml"
    toml.write_text('[prompt]\nwidth = 64\nheight = 64\nsample_steps = 2\nseed = 5\nsample_sampler = "euler"\n\n'
                    '[[prompt.subset]]\nprompt = "1girl"\n')
    out = tmp_path / "out"
    argv = ["epochs", str(run), "--prompts", str(toml), "--strengths", "0.6", "--seeds", "2", "--epochs", "final",
            "--data-dir", str(data_dir), "--device", "cpu", "--out", str(out), "--no-progress",
            "--publish", "final:0.6"]
    assert main(argv) == 0
    stdout, err = capsys.readouterr()
    lines = stdout.split()
    cells = [p for p in lines if p.endswith(".png") and "_w" in p]
    assert len(cells) == 2 and sum("grid-s" in p for p in lines) == 2  # one grid per seed
    assert str(run / "clirun.preview.png") in lines and str(run / "clirun.json") in lines
    assert "2 cells made" in err and "'euler'" in err and "published clirun.safetensors" in err
    assert main(argv) == 0  # resumes: nothing new, the user's sidecar values are now set and kept
    _, err = capsys.readouterr()
    assert "0 cells made, 2 already there" in err and "kept" in err
    assert main(["epochs", str(tmp_path / "nope"), "--data-dir", str(data_dir)]) == 1
    assert "not a folder" in capsys.readouterr().err


# -- service -----------------------------------------------------------------------------------------------------
def test_service_lists_a_series_as_one_card(folders, tiny_model):
    from creationmix.service import Service
    write_series(folders.lora_dirs[0] / "run", tiny_model, "style")
    write_lora(folders.lora_dirs[0] / "solo.safetensors", kohya_lora(tiny_model.pipe.unet, None, conv=False))
    svc = Service(folders, demo_if_empty=False)
    cards = {c.name: c for c in svc.list_loras()}
    assert set(cards) == {"style", "solo"}  # the epochs are on the final file's card
    assert cards["style"].epochs == ("style-000001", "style-000002", "style-000003") and cards["solo"].epochs == ()
    (sc,) = svc.list_lora_series()
    assert sc.name == "style" and sc.keys == ("1", "2", "3", "final")
    assert sc.labels[-1] == "final: epoch 4 (1600 steps)" and sc.folder == folders.lora_dirs[0] / "run"


def test_fake_service_epoch_grid_is_what_the_tab_reads(tmp_path):
    from fake_service import FakeService
    svc = FakeService(tmp_path)
    (card,) = svc.list_lora_series()
    res = svc.run_epoch_grid(card.name, prompts_text="1girl --w 64 --h 64 --s 2 --d 5", strengths="0.5,1",
                             publish="final:1")
    assert res.count("done") == 6 and len(res.grid_paths) == 1 and res.published.preview_written
    assert res.published.preview in res.files and (tmp_path / "models" / "Lora" / "paper_run.json").is_file()
