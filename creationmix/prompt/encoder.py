"""A1111's prompt encoder (sd_hijack_clip.FrozenCLIPEmbedderWithCustomWords) over a diffusers CLIPTextModel.

- Prompts of any length: 75 tokens per chunk, each chunk wrapped BOS + 75 + EOS and padded with EOS (SD 1's
  pad id), chunks encoded separately and concatenated -> (1, 77*k, D).
- When a chunk fills up, the tokens after its last comma move to the next chunk if that comma is within the
  last 20 tokens (A1111's comma_padding_backtrack). BREAK pads out the current chunk.
- Textual-inversion vectors replace the token embeddings at their positions (position embeddings are added
  by CLIP as for any token); an embedding never straddles two chunks (but the comma backtrack leaves its
  vectors behind, as A1111's does).
- Clip skip N: final_layer_norm(hidden_states[-N]) (N = 1 is last_hidden_state).
- Emphasis: "Original" multiplies each token's vector by its weight and restores the mean of the whole
  chunk batch; "No norm" only multiplies; "None" does not parse brackets at all (A1111: they stay text).

The real text encoder is never modified: TI vectors go in through a forward hook on the token embedding that
exists only for the duration of one call.
"""
from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import InvalidParameter
from ..params import EMPHASIS_MODES
from .attention import BREAK_MARK, parse_prompt_attention
from .embeddings import Embedding, EmbeddingLibrary, EmbeddingMatcher

log = logging.getLogger(__name__)

CHUNK_LENGTH = 75
COMMA_PADDING_BACKTRACK = 20


@dataclass
class PromptChunk:
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[tuple[int, Embedding]] = field(default_factory=list)  # (offset in the 75-token body, embedding)


def _tokenize(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, truncation=False, add_special_tokens=False, verbose=False)["input_ids"]


class ChunkBuilder:
    """Turns one prompt line into PromptChunks exactly as A1111's tokenize_line does. Torch-free apart from
    the tokenizer, so the UI's token counter can use it without a model."""

    def __init__(self, tokenizer, matcher: EmbeddingMatcher | None = None, *,
                 comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK):
        self.tokenizer = tokenizer
        self.matcher = matcher
        self.backtrack = comma_padding_backtrack
        self.id_start = tokenizer.bos_token_id
        self.id_end = tokenizer.eos_token_id
        self.id_pad = self.id_end  # SD 1: A1111 pads with the end token whatever the tokenizer says
        self.comma_token = tokenizer.get_vocab().get(",</w>")

    def empty_chunk(self) -> PromptChunk:
        return PromptChunk([self.id_start] + [self.id_end] * (CHUNK_LENGTH + 1), [1.0] * (CHUNK_LENGTH + 2))

    def build(self, line: str, emphasis: str = "Original") -> tuple[list[PromptChunk], int]:
        """(chunks of 77 tokens, token count as A1111 reports it)."""
        parsed = parse_prompt_attention(line) if emphasis != "None" else [[line, 1.0]]
        tokenized = _tokenize(self.tokenizer, [text for text, _ in parsed])

        chunks: list[PromptChunk] = []
        chunk = PromptChunk()
        token_count = 0
        last_comma = -1

        def next_chunk(is_last: bool = False) -> None:
            nonlocal chunk, token_count, last_comma
            token_count += len(chunk.tokens) if is_last else CHUNK_LENGTH
            to_add = CHUNK_LENGTH - len(chunk.tokens)
            if to_add > 0:
                chunk.tokens += [self.id_end] * to_add
                chunk.multipliers += [1.0] * to_add
            chunk.tokens = [self.id_start] + chunk.tokens + [self.id_end]
            chunk.multipliers = [1.0] + chunk.multipliers + [1.0]
            last_comma = -1
            chunks.append(chunk)
            chunk = PromptChunk()

        for tokens, (text, weight) in zip(tokenized, parsed):
            if text == BREAK_MARK and weight == -1:
                next_chunk()
                continue
            position = 0
            while position < len(tokens):
                token = tokens[position]
                if token == self.comma_token:
                    last_comma = len(chunk.tokens)
                elif (self.backtrack and len(chunk.tokens) == CHUNK_LENGTH and last_comma != -1
                      and len(chunk.tokens) - last_comma <= self.backtrack):
                    # Move the words after the last comma to the next chunk so a phrase is not cut in two.
                    # A1111 moves tokens and weights only: an embedding's vectors stay in this chunk at their
                    # old offset (over the end padding, weight 1) and its placeholder ids 0 move on.
                    cut = last_comma + 1
                    moved_tokens, moved_mults = chunk.tokens[cut:], chunk.multipliers[cut:]
                    chunk.tokens, chunk.multipliers = chunk.tokens[:cut], chunk.multipliers[:cut]
                    next_chunk()
                    chunk.tokens, chunk.multipliers = moved_tokens, moved_mults
                if len(chunk.tokens) == CHUNK_LENGTH:
                    next_chunk()

                emb, used = self.matcher.match(tokens, position) if self.matcher else (None, 0)
                if emb is None:
                    chunk.tokens.append(token)
                    chunk.multipliers.append(weight)
                    position += 1
                    continue
                n = emb.num_vectors
                if len(chunk.tokens) + n > CHUNK_LENGTH:
                    next_chunk()
                chunk.fixes.append((len(chunk.tokens), emb))
                chunk.tokens += [0] * n
                chunk.multipliers += [weight] * n
                position += used

        if chunk.tokens or not chunks:
            next_chunk(is_last=True)
        return chunks, token_count


def target_token_count(token_count: int) -> int:
    """Capacity shown next to the count: 75, 150, ... (A1111's get_target_prompt_token_count)."""
    return math.ceil(max(token_count, 1) / CHUNK_LENGTH) * CHUNK_LENGTH


def _check_emphasis(emphasis: str) -> None:
    if emphasis not in EMPHASIS_MODES:
        raise InvalidParameter(f"unknown emphasis mode {emphasis!r}; valid: {', '.join(EMPHASIS_MODES)}")


def apply_emphasis(z: torch.Tensor, multipliers: torch.Tensor, emphasis: str) -> torch.Tensor:
    """A1111's sd_emphasis on one chunk batch: z (B, 77, D), multipliers (B, 77)."""
    if emphasis == "None":
        return z
    zf = z.float()
    scaled = zf * multipliers.to(zf.device, torch.float32).unsqueeze(-1)
    if emphasis == "Original":
        # Restores the mean of the whole batch tensor (A1111 takes z.mean() over everything, not per token).
        scaled = scaled * (zf.mean() / scaled.mean())
    return scaled.to(z.dtype)


_hook_lock = threading.RLock()
_warned: set[str] = set()


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)


def run_text_encoder(text_encoder, input_ids: torch.Tensor, fixes: list[list[tuple[int, torch.Tensor]]] | None,
                     clip_skip: int, attention_mask: torch.Tensor | None = None):
    """(z, outputs): z = final_layer_norm(hidden_states[-clip_skip]); `fixes[b]` = [(position, (n, D)), ...]
    rows of the token embeddings of batch item b replaced for this call only."""
    layers = int(text_encoder.config.num_hidden_layers)
    if clip_skip < 1:
        raise InvalidParameter(f"clip skip must be at least 1, got {clip_skip}")
    if clip_skip > layers:
        # Only small test/demo encoders have fewer layers than A1111's clip skip range (SD 1.5 has 12).
        _warn_once(f"clip skip {clip_skip} exceeds the text encoder's {layers} layers; using {layers}")
        clip_skip = layers
    emb_layer = text_encoder.embeddings.token_embedding
    handle = None

    def inject(module, inputs, out):
        out = out.clone()
        for b, items in enumerate(fixes):
            for pos, vec in items:
                out[b, pos:pos + vec.shape[0]] = vec.to(out.device, out.dtype)
        return out

    with _hook_lock, torch.no_grad():
        if fixes and any(fixes):
            handle = emb_layer.register_forward_hook(inject)
        try:
            outputs = text_encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                                   return_dict=True)
        finally:
            if handle is not None:
                handle.remove()
        if clip_skip == 1:
            z = outputs.last_hidden_state
        else:
            z = text_encoder.final_layer_norm(outputs.hidden_states[-clip_skip])
    return z, outputs


class PromptEncoder:
    """A1111-compatible conditioning from prompt text. Keeps a small LRU cache keyed by everything that can
    change the result; the LoRA code calls `invalidate()` after it changes the text encoder's weights."""

    def __init__(self, text_encoder, tokenizer, embeddings: EmbeddingLibrary | None = None, *,
                 cache_size: int = 32, comma_padding_backtrack: int = COMMA_PADDING_BACKTRACK):
        self.text_encoder = text_encoder
        self.tokenizer = tokenizer
        self.embeddings = embeddings
        self.comma_padding_backtrack = comma_padding_backtrack
        self.te_state = 0
        self.used_embeddings: dict[str, Embedding] = {}
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self._matcher_key = None
        self._builder: ChunkBuilder | None = None

    # -- state --------------------------------------------------------------------------------------------
    def invalidate(self) -> None:
        """Forget every cached conditioning (the text encoder's weights changed, e.g. a LoRA was applied)."""
        self.te_state += 1
        self._cache.clear()

    def set_te_state(self, key) -> None:
        """Name the text encoder's current LoRA state (hashable, unique per weights): it is part of every cache
        key, so returning to an earlier state (a strength sweep run again) reuses its conditionings."""
        self.te_state = key

    @property
    def width(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    def _embeddings_key(self) -> tuple:
        if self.embeddings is None:
            return ()
        self.embeddings.reload()
        return self.embeddings.signature

    def builder(self) -> ChunkBuilder:
        key = self._embeddings_key()
        if self._builder is None or key != self._matcher_key:
            matcher = self.embeddings.matcher(self.tokenizer, width=self.width) if self.embeddings else None
            self._builder = ChunkBuilder(self.tokenizer, matcher, comma_padding_backtrack=self.comma_padding_backtrack)
            self._matcher_key = key
        return self._builder

    def cached(self, key: tuple, compute):
        """LRU cache shared with the compel adapter: key is extended with the TE and embeddings state."""
        full = key + (self.te_state, self._embeddings_key())
        hit = self._cache.get(full)
        if hit is not None:
            self._cache.move_to_end(full)
            return hit
        value = compute()
        self._cache[full] = value
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return value

    # -- encoding -----------------------------------------------------------------------------------------
    def tokenize_line(self, line: str, emphasis: str = "Original") -> tuple[list[PromptChunk], int]:
        return self.builder().build(line, emphasis)

    def token_count(self, text: str, emphasis: str = "Original") -> tuple[int, int]:
        """(tokens used, capacity) as A1111's counter shows them: 42/75, 98/150."""
        _, count = self.tokenize_line(text, emphasis)
        return count, target_token_count(count)

    def encode(self, text: str, clip_skip: int = 1, emphasis: str = "Original") -> torch.Tensor:
        """(1, 77*k, D) conditioning for one prompt (no AND / scheduling: see conditioning.py)."""
        return self.encode_batch([text], clip_skip=clip_skip, emphasis=emphasis)

    def encode_batch(self, texts: list[str], clip_skip: int = 1, emphasis: str = "Original") -> torch.Tensor:
        """(B, 77*k, D): A1111 encodes the texts of one prompt schedule as one batch; shorter ones get empty
        chunks and "Original" emphasis restores the mean over the whole batch, so results match A1111's."""
        _check_emphasis(emphasis)
        key = ("A1111", tuple(texts), int(clip_skip), emphasis)
        z, used = self.cached(key, lambda: self._encode_batch(list(texts), int(clip_skip), emphasis))
        self.used_embeddings = dict(used)
        return z

    def _encode_batch(self, texts: list[str], clip_skip: int, emphasis: str):
        builder = self.builder()
        lines: dict[str, list[PromptChunk]] = {}
        for line in texts:
            if line not in lines:
                lines[line] = builder.build(line, emphasis)[0]
        batch_chunks = [lines[line] for line in texts]
        used: dict[str, Embedding] = {}
        device = self.text_encoder.device
        zs = []
        for i in range(max(len(c) for c in batch_chunks)):
            batch = [chunks[i] if i < len(chunks) else builder.empty_chunk() for chunks in batch_chunks]
            ids = torch.tensor([c.tokens for c in batch], dtype=torch.long, device=device)
            mults = torch.tensor([c.multipliers for c in batch], dtype=torch.float32, device=device)
            fixes = []
            for c in batch:
                fixes.append([(off + 1, emb.vectors) for off, emb in c.fixes])  # +1: after BOS
                for _, emb in c.fixes:
                    used[emb.name] = emb
            z, _ = run_text_encoder(self.text_encoder, ids, fixes, clip_skip)
            zs.append(apply_emphasis(z, mults, emphasis))
        return torch.cat(zs, dim=1), used


TOKENIZER_DIR = Path(__file__).resolve().parent.parent / "resources" / "sd15" / "tokenizer"


@lru_cache(maxsize=1)
def default_tokenizer():
    """The SD 1.5 CLIP tokenizer shipped with the package (works without a loaded model)."""
    from transformers import CLIPTokenizer
    return CLIPTokenizer.from_pretrained(TOKENIZER_DIR)


_counter_matcher: dict = {}


def _matcher_for_counting(embeddings: EmbeddingLibrary, tokenizer) -> EmbeddingMatcher:
    key = (id(embeddings), id(tokenizer), embeddings.signature)
    if key not in _counter_matcher:
        _counter_matcher.clear()
        _counter_matcher[key] = embeddings.matcher(tokenizer)
    return _counter_matcher[key]


def count_tokens(text: str, *, embeddings: EmbeddingLibrary | None = None, tokenizer=None, steps: int = 20,
                 emphasis: str = "Original") -> tuple[int, int]:
    """A1111's token counter for the UI: the longest of the prompt's AND parts and schedule variants.
    No model needed; embeddings count with their vector count (width is not known here)."""
    from .schedule import get_learned_conditioning_prompt_schedules, get_multicond_prompt_list

    tokenizer = tokenizer or default_tokenizer()
    matcher = None
    if embeddings is not None:
        embeddings.reload()
        matcher = _matcher_for_counting(embeddings, tokenizer)
    builder = ChunkBuilder(tokenizer, matcher)
    _, flat, _ = get_multicond_prompt_list([text])
    schedules = get_learned_conditioning_prompt_schedules(flat, steps)
    count = max(builder.build(t, emphasis)[1] for sched in schedules for _, t in sched)
    return count, target_token_count(count)


__all__ = ["PromptEncoder", "PromptChunk", "ChunkBuilder", "apply_emphasis", "run_text_encoder", "count_tokens",
           "target_token_count", "default_tokenizer", "CHUNK_LENGTH", "COMMA_PADDING_BACKTRACK"]
