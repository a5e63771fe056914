"""The one generation loop every generative task uses: batched, length-sorted ``model.generate``.

- Inputs are sorted by length (longest first) so each batch carries little padding, and the
  outputs are put back in input order.
- Encoder-decoder models get right-padded inputs; decoder-only models get *left*-padded prompts
  (generation continues at the right edge), only the new tokens are returned, and
  ``max_new_tokens`` is capped so prompt + continuation fit the model's positions.
- Each output is cut at the first EOS (exclusive); the decoder start token an encoder-decoder
  model emits first is dropped.
"""

from __future__ import annotations

from typing import Any, Sequence


def model_device(model):
    import torch

    try:
        return next(model.parameters()).device
    except StopIteration:
        return torch.device("cpu")


def _position_limit(config) -> int | None:
    for key in ("n_positions", "max_position_embeddings"):
        v = getattr(config, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def generate_ids(
    model,
    inputs: Sequence[Sequence[int]],
    *,
    pad_token_id: int,
    eos_token_id: int | list[int] | None,
    batch_size: int = 32,
    num_beams: int = 1,
    max_new_tokens: int = 64,
    **generate_kwargs: Any,
) -> list[list[int]]:
    """Generated token ids for each input id sequence, in input order.

    ``generate_kwargs`` go to ``model.generate`` as they are (e.g. ``forced_bos_token_id``);
    everything else comes from ``model.generation_config``.
    """
    import torch

    n = len(inputs)
    if n == 0:
        return []
    decoder_only = not getattr(model.config, "is_encoder_decoder", False)
    eos = set([eos_token_id] if isinstance(eos_token_id, int) else (eos_token_id or []))
    order = sorted(range(n), key=lambda i: -len(inputs[i]))
    device = model_device(model)
    limit = _position_limit(model.config)
    was_training = model.training
    model.eval()
    out: list[list[int] | None] = [None] * n
    try:
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            seqs = [list(inputs[i]) for i in idx]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(seqs), width), dtype=torch.long)
            for r, s in enumerate(seqs):
                if decoder_only:  # left padding: every prompt ends at the right edge
                    ids[r, width - len(s):] = torch.tensor(s, dtype=torch.long)
                    mask[r, width - len(s):] = 1
                else:
                    ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
                    mask[r, :len(s)] = 1
            new_tokens = max_new_tokens
            if decoder_only and limit:  # prompt + continuation must fit the position embeddings
                new_tokens = max(1, min(max_new_tokens, limit - width))
            with torch.no_grad():
                gen = model.generate(
                    input_ids=ids.to(device), attention_mask=mask.to(device), num_beams=num_beams,
                    max_new_tokens=new_tokens, do_sample=False, pad_token_id=pad_token_id,
                    eos_token_id=eos_token_id, **generate_kwargs,
                )
            gen = gen[:, width:] if decoder_only else gen[:, 1:]  # new tokens / drop the decoder start
            for r, i in enumerate(idx):
                row = gen[r].tolist()
                cut = next((k for k, t in enumerate(row) if t in eos), len(row))
                out[i] = row[:cut]
    finally:
        if was_training:
            model.train()
    return out  # type: ignore[return-value]
