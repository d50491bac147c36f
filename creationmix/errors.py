"""Domain errors. The engine raises these; only the UI turns them into gr.Error, only the CLI into exit codes."""


class CreationMixError(Exception):
    """Base for every error a user can act on. The message is shown to the user as is."""


class InvalidParameter(CreationMixError, ValueError):
    """A generation parameter is out of range or unknown. Raised before any work starts."""


class ModelError(CreationMixError):
    """A checkpoint or VAE file is missing, unreadable, of another architecture or incomplete."""


class LoraError(CreationMixError):
    """A LoRA file cannot be found, read or applied. The model is left as it was."""


class PathError(CreationMixError):
    """A name from outside tries to leave its configured folder (`..`, absolute path, drive letter)."""


class InfotextError(CreationMixError):
    """An A1111 infotext block has no parameters or a bad value."""


class PresetError(CreationMixError):
    """A preset card file is malformed."""


class Interrupted(CreationMixError):
    """The user interrupted a generation; images already finished are kept."""


class WriteError(CreationMixError, OSError):
    """A file could not be written (read-only folder, disk full, ...). Nothing half-written is left behind."""
