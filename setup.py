"""Package layout for setuptools (metadata lives in pyproject.toml).

The shipped preset cards have one source, the top-level presets/ folder; the wheel carries it as the package
creationmix._presets (presets.PRESETS_DIR finds it there, and finds presets/ itself in a checkout or an
editable install). The SD 1.5 configs and tokenizer ship as creationmix.resources data.
"""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["creationmix", "creationmix.*"]) + ["creationmix._presets"],
    package_dir={"creationmix._presets": "presets"},
    package_data={
        "creationmix._presets": ["*.toml", "*.png", "*.jpg", "*.webp", "*.md"],
        "creationmix.resources": ["sd15/*.json", "sd15/*/*.json", "sd15/*/*.txt"],
    },
    include_package_data=False,
)
