"""Checkpoint loading (loader), diffusers->LDM conversion (ldm_convert), tiny random models (tiny).

Import the submodules directly; this package import stays cheap."""
