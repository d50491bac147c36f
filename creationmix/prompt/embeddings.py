"""Textual-inversion embeddings from A1111's `embeddings/` folders.

Every `.pt`/`.bin`/`.safetensors` file below the folders (recursively) is one embedding named by its file stem,
as in A1111. Accepted contents: A1111/textual-inversion `{"string_to_param": {"*": tensor}}`, `.safetensors`
with `emb_params`, and diffusers-style `{token: tensor}` with a single entry; the tensor is (n, D) or (D,).
Files that cannot be read are skipped with a warning naming the file; they never stop a generation.

Matching happens on token ids (see `EmbeddingMatcher`), so names are case-insensitive through the CLIP
tokenizer and a multi-vector embedding always contributes all its vectors.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..paths import EMBEDDING_EXTS, list_files

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Embedding:
    name: str
    path: Path
    vectors: torch.Tensor  # (n, D) float32 on CPU
    _hash: str | None = field(default=None, repr=False)
    cache_dir: Path | None = field(default=None, repr=False)

    @property
    def num_vectors(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def width(self) -> int:
        return int(self.vectors.shape[-1])

    @property
    def shorthash(self) -> str:
        """sha256 of the file, first 12 hex digits (A1111's "TI hashes")."""
        if self._hash is None:
            try:
                from ..hashing import sha256_file
                self._hash = sha256_file(self.path, cache_dir=self.cache_dir)[:12]
            except ImportError:  # pragma: no cover - hashing module is part of the package
                import hashlib
                self._hash = hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]
        return self._hash


class EmbeddingFormatError(ValueError):
    pass


def _tensor_from_data(data, filename: str) -> torch.Tensor:
    if isinstance(data, dict) and "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)
        if len(params) != 1:
            raise EmbeddingFormatError(f"{filename}: string_to_param holds {len(params)} terms, expected 1")
        vec = next(iter(params.values()))
    elif isinstance(data, dict) and "emb_params" in data:
        vec = data["emb_params"]
    elif isinstance(data, dict) and "clip_l" in data and "clip_g" in data:
        raise EmbeddingFormatError(f"{filename} is an SDXL embedding (clip_l/clip_g); SD 1.5 cannot use it")
    elif isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        vec = next(iter(data.values()))
    else:
        raise EmbeddingFormatError(f"{filename} is neither an A1111 textual inversion nor a diffusers concept file")
    if not isinstance(vec, torch.Tensor):
        raise EmbeddingFormatError(f"{filename}: the embedding is not a tensor")
    if not vec.is_floating_point():
        raise EmbeddingFormatError(f"{filename}: {str(vec.dtype).replace('torch.', '')} vectors; expected floats")
    vec = vec.detach().to(device="cpu", dtype=torch.float32)
    if not bool(torch.isfinite(vec).all()):
        # Used as is it turns every prompt that names it into NaN conditioning: a black image.
        raise EmbeddingFormatError(f"{filename}: the embedding holds NaN/Inf values (a broken file)")
    if vec.dim() == 1:
        vec = vec.unsqueeze(0)
    if vec.dim() != 2 or vec.shape[0] == 0:
        raise EmbeddingFormatError(f"{filename}: expected a (vectors, width) tensor, got shape {tuple(vec.shape)}")
    return vec.contiguous()


def load_embedding_file(path: Path) -> torch.Tensor:
    """The (n, D) vectors of one file. Raises on anything unreadable."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file
        data = load_file(str(path), device="cpu")
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    return _tensor_from_data(data, path.name)


class EmbeddingLibrary:
    """All embeddings in `dirs` (first folder wins on equal names). `reload()` rescans when files changed."""

    def __init__(self, dirs, cache_dir: Path | None = None):
        self.dirs = [Path(d) for d in dirs]
        self.cache_dir = cache_dir
        self._lock = threading.Lock()
        self._by_name: dict[str, Embedding] = {}
        self.skipped: dict[str, str] = {}  # file name -> reason
        self._signature: tuple = ()
        self.reload()

    def _scan_signature(self) -> tuple:
        sig = []
        for p in list_files(self.dirs, EMBEDDING_EXTS):
            try:
                st = p.stat()
            except OSError:
                continue
            sig.append((str(p), st.st_size, st.st_mtime_ns))
        return tuple(sig)

    def reload(self, force: bool = False) -> bool:
        """Rescan the folders; returns True when the set of files changed (and was reloaded)."""
        with self._lock:
            sig = self._scan_signature()
            if sig == self._signature and not force:
                return False
            old = {(str(e.path), e.name): e for e in self._by_name.values()}
            by_name: dict[str, Embedding] = {}
            skipped: dict[str, str] = {}
            prev = dict(self._signature_map())
            for path_s, size, mtime in sig:
                path = Path(path_s)
                name = path.stem
                if name in by_name:
                    log.info("embedding %s: %s ignored, %s has the same name", name, path, by_name[name].path)
                    continue
                cached = old.get((path_s, name))
                if cached is not None and prev.get(path_s) == (size, mtime):
                    by_name[name] = cached
                    continue
                try:
                    vec = load_embedding_file(path)
                except Exception as exc:  # noqa: BLE001 - any unreadable file is skipped, never fatal
                    reason = str(exc) or type(exc).__name__
                    log.warning("skipping embedding file %s: %s", path, reason)
                    skipped[path.name] = reason
                    continue
                by_name[name] = Embedding(name=name, path=path, vectors=vec, cache_dir=self.cache_dir)
            self._by_name, self.skipped, self._signature = by_name, skipped, sig
            return True

    def _signature_map(self):
        return ((p, (s, m)) for p, s, m in self._signature)

    @property
    def signature(self) -> tuple:
        """Changes whenever the loaded set changes (part of the encoder's cache key)."""
        return self._signature

    def get(self, name: str) -> Embedding | None:
        return self._by_name.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self):
        return iter(list(self._by_name.values()))

    @property
    def names(self) -> list[str]:
        return sorted(self._by_name)

    def matcher(self, tokenizer, width: int | None = None, max_vectors: int = 75) -> "EmbeddingMatcher":
        return EmbeddingMatcher(list(self), tokenizer, width=width, max_vectors=max_vectors)


class EmbeddingMatcher:
    """A1111's `find_embedding_at_position`: embeddings keyed by the first token id of their tokenized name,
    longest name first. Embeddings of another width (SD 2 / SDXL) are left out with a warning naming them."""

    _warned: set[tuple[str, str]] = set()

    def __init__(self, embeddings, tokenizer, width: int | None = None, max_vectors: int = 75):
        self.by_first: dict[int, list[tuple[list[int], Embedding]]] = {}
        self.skipped: dict[str, str] = {}
        for emb in embeddings:
            reason = None
            if width is not None and emb.width != width:
                reason = f"its vectors are {emb.width} wide, the text encoder needs {width}"
            elif emb.num_vectors > max_vectors:
                reason = f"it has {emb.num_vectors} vectors, a prompt chunk holds {max_vectors}"
            if reason:
                self.skipped[emb.name] = reason
                key = (str(emb.path), reason)
                if key not in self._warned:
                    self._warned.add(key)
                    log.warning("embedding %s skipped: %s", emb.name, reason)
                continue
            ids = _tokenize(tokenizer, emb.name)
            if not ids:
                continue
            self.by_first.setdefault(ids[0], []).append((ids, emb))
        for lst in self.by_first.values():
            lst.sort(key=lambda item: len(item[0]), reverse=True)

    def match(self, tokens: list[int], offset: int) -> tuple[Embedding | None, int]:
        """(embedding, number of prompt tokens its name used) at `offset`, or (None, 0)."""
        for ids, emb in self.by_first.get(tokens[offset], ()):
            if tokens[offset:offset + len(ids)] == ids:
                return emb, len(ids)
        return None, 0

    def __bool__(self) -> bool:
        return bool(self.by_first)


def _tokenize(tokenizer, text: str) -> list[int]:
    return tokenizer([text], truncation=False, add_special_tokens=False, verbose=False)["input_ids"][0]


def ti_hashes(used: dict[str, Embedding]) -> dict[str, str]:
    """{name: shorthash} for the infotext; names lose `:` and `,` as A1111 writes them."""
    out = {}
    for name, emb in used.items():
        out[name.replace(":", "").replace(",", "")] = emb.shorthash
    return out


__all__ = ["Embedding", "EmbeddingLibrary", "EmbeddingMatcher", "load_embedding_file", "ti_hashes",
           "EmbeddingFormatError"]
