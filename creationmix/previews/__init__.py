"""The LoRA-library preview job: one preview image per LoRA, resumable, with a summary and a contact sheet."""
