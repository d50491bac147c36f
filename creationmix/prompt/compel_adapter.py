"""`Prompt syntax: Compel`: compel 2.x weighting (`(word)1.3`, `word++`, `.blend()`, `.and()`) on our model.

compel is given thin stand-ins, never the real modules, so nothing is patched on the model the pipeline uses:
- the text encoder stand-in returns final_layer_norm(hidden_states[-clip_skip]) as `last_hidden_state`
  (compel's LAST_HIDDEN_STATES_NORMALIZED mode), so any clip skip works; compel itself would reach for
  `text_encoder.text_model`, which transformers 5's CLIPTextModel no longer has;
- textual-inversion names found in the token ids (same matching as the A1111 route) are expanded to one
  placeholder id per vector, beyond the vocabulary; the stand-in maps them back to the vectors and feeds them
  through the same one-call embedding hook as the A1111 encoder.
Long prompts are not truncated (compel chunks them); prompt and negative are padded to the same length.
"""
from __future__ import annotations

import torch

from .embeddings import Embedding, EmbeddingMatcher
from .encoder import PromptEncoder, run_text_encoder


class _TIExpander:
    """compel's BaseTextualInversionManager protocol: name tokens -> one placeholder id per vector."""

    def __init__(self, matcher: EmbeddingMatcher | None, vocab_size: int):
        self.matcher = matcher
        self.next_id = vocab_size
        self.base: dict[str, int] = {}
        self.rows: dict[int, tuple[Embedding, int]] = {}
        self.used: dict[str, Embedding] = {}

    def _placeholders(self, emb: Embedding) -> list[int]:
        if emb.name not in self.base:
            self.base[emb.name] = self.next_id
            for k in range(emb.num_vectors):
                self.rows[self.next_id + k] = (emb, k)
            self.next_id += emb.num_vectors
        self.used[emb.name] = emb
        return list(range(self.base[emb.name], self.base[emb.name] + emb.num_vectors))

    def expand_textual_inversion_token_ids_if_necessary(self, token_ids: list[int]) -> list[int]:
        if not self.matcher:
            return token_ids
        out: list[int] = []
        i = 0
        while i < len(token_ids):
            emb, used = self.matcher.match(token_ids, i)
            if emb is None:
                out.append(token_ids[i])
                i += 1
            else:
                out += self._placeholders(emb)
                i += used
        return out


class _TokenizerView:
    """The real tokenizer, except that placeholder ids read as word pieces (the last one ends a word, so
    compel's long-prompt splitter may cut after an embedding but never inside it)."""

    def __init__(self, tokenizer, expander: _TIExpander):
        self._tok = tokenizer
        self._exp = expander

    def __getattr__(self, name):
        return getattr(self._tok, name)

    def __call__(self, *args, **kwargs):
        kwargs.setdefault("verbose", False)
        return self._tok(*args, **kwargs)

    def convert_ids_to_tokens(self, ids):
        single = isinstance(ids, int)
        out = []
        for i in ([ids] if single else ids):
            i = int(i)
            if i in self._exp.rows:
                emb, k = self._exp.rows[i]
                out.append("<ti></w>" if k == emb.num_vectors - 1 else "<ti>")
            else:
                out.append(self._tok.convert_ids_to_tokens(i))
        return out[0] if single else out


class CompelTextEncoder:
    """What compel calls `text_encoder`: device, dtype and a call returning an output with
    `last_hidden_state` = the clip-skipped, final-layer-normed hidden states."""

    def __init__(self, text_encoder, clip_skip: int, expander: _TIExpander):
        self._te = text_encoder
        self.clip_skip = clip_skip
        self._exp = expander

    @property
    def device(self):
        return self._te.device

    @property
    def dtype(self):
        return self._te.dtype

    @property
    def config(self):
        return self._te.config

    @property
    def final_layer_norm(self):
        return self._te.final_layer_norm

    @property
    def text_model(self):
        # For compel's PENULTIMATE_* modes, which read text_encoder.text_model.final_layer_norm.
        return self

    def __call__(self, input_ids, attention_mask=None, output_hidden_states=False, return_dict=True, **_):
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        ids = input_ids.long().to(self._te.device)
        fixes = [[] for _ in range(ids.shape[0])]
        if self._exp.rows:
            placeholder = ids >= int(self._te.config.vocab_size)
            for b, pos in placeholder.nonzero().tolist():
                emb, k = self._exp.rows[int(ids[b, pos])]
                fixes[b].append((pos, emb.vectors[k:k + 1]))
            ids = torch.where(placeholder, torch.zeros_like(ids), ids)
        if attention_mask is not None:
            attention_mask = attention_mask.to(ids.device)
        z, out = run_text_encoder(self._te, ids, fixes, self.clip_skip, attention_mask=attention_mask)
        return BaseModelOutputWithPooling(last_hidden_state=z, pooler_output=out.pooler_output,
                                          hidden_states=out.hidden_states)


def make_compel(encoder: PromptEncoder, clip_skip: int = 1):
    """(Compel instance over stand-ins, the TI expander recording used embeddings)."""
    from compel import Compel, ReturnedEmbeddingsType

    builder = encoder.builder()  # refreshes the embeddings matcher (width-checked)
    expander = _TIExpander(builder.matcher, int(encoder.text_encoder.config.vocab_size))
    te = CompelTextEncoder(encoder.text_encoder, clip_skip, expander)
    compel = Compel(tokenizer=_TokenizerView(encoder.tokenizer, expander), text_encoder=te,
                    textual_inversion_manager=expander, truncate_long_prompts=False,
                    returned_embeddings_type=ReturnedEmbeddingsType.LAST_HIDDEN_STATES_NORMALIZED,
                    device=encoder.text_encoder.device)
    return compel, expander


def compel_conditioning(encoder: PromptEncoder, prompt: str, negative_prompt: str, *, clip_skip: int = 1
                        ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Embedding]]:
    """(cond (1, L, D), uncond (1, L, D), used embeddings), padded to the same length; cached on the encoder."""

    def compute():
        compel, expander = make_compel(encoder, clip_skip)
        with torch.no_grad():
            cond = compel.build_conditioning_tensor(prompt)
            uncond = compel.build_conditioning_tensor(negative_prompt)
            cond, uncond = compel.pad_conditioning_tensors_to_same_length([cond, uncond])
        return cond, uncond, dict(expander.used)

    cond, uncond, used = encoder.cached(("Compel", prompt, negative_prompt, int(clip_skip)), compute)
    encoder.used_embeddings = dict(used)
    return cond, uncond, used


__all__ = ["compel_conditioning", "make_compel", "CompelTextEncoder"]
