"""How Hugging Face examples stack into a batch and the model's output
splits back per example: dicts of 1-D token tensors padded per batch (with an
attention mask), token-level outputs trimmed to each example's own length."""
from __future__ import annotations

import sys
from typing import Any, Optional, Sequence

from ..exceptions import InvalidInputError
from .._core.results import to_results
from .common import check_types, require

_WHO = 'HuggingFaceModelHandlerKeyedTensor'


def pad_value(name: str, pad_token_id: Optional[int]) -> int:
  if name == 'input_ids' and pad_token_id is not None:
    return int(pad_token_id)
  return 0


def stack_keyed(batch: Sequence[dict], device, pad_token_id: Optional[int],
                 accepts_mask: bool):
  """Stacks each named input; 1-D inputs of different lengths are padded to
  the longest in this batch. Returns (inputs, lengths or None)."""
  torch = require('torch', _WHO)
  who = _WHO
  check_types(
      batch, lambda x: isinstance(x, dict), who,
      'a dict of tensors (e.g. tokenizer output)', 'Tokenize text in a '
      'preprocess step, e.g. handler.with_preprocess_fn(Tokenize(model_path)).')
  names = list(batch[0])
  inputs: dict = {}
  lengths: Optional[list[int]] = None
  for name in names:
    try:
      tensors = [x[name] for x in batch]
    except KeyError as e:
      raise InvalidInputError(
          f'{who}: every example must have the same keys {names}; one lacks '
          f'{e.args[0]!r}.') from e
    check_types(tensors, lambda t: isinstance(t, torch.Tensor),
                f'{who} (input {name!r})', 'a torch.Tensor',
                'Tokenize with return_tensors="pt".')
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) == 1:
      inputs[name] = torch.stack(tensors).to(device)
      continue
    if any(t.dim() != 1 for t in tensors):
      raise InvalidInputError(
          f'{who}: input {name!r} has different shapes in one batch '
          f'{sorted(shapes)}; only 1-D sequences (token ids, masks) are '
          'padded per batch. Give each example one unbatched sequence, e.g. '
          '{k: v[0] for k, v in tokenizer(text, return_tensors="pt").items()}.')
    these = [int(t.shape[0]) for t in tensors]
    if lengths is not None and these != lengths:
      raise InvalidInputError(
          f'{who}: input {name!r} has lengths {these} but another input has '
          f'{lengths}; the sequences of one example must have one length.')
    lengths = these
    inputs[name] = torch.nn.utils.rnn.pad_sequence(
        tensors, batch_first=True,
        padding_value=pad_value(name, pad_token_id)).to(device)
  if lengths is not None and 'attention_mask' not in inputs and accepts_mask:
    longest = max(lengths)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for i, n in enumerate(lengths):
      mask[i, :n] = 1
    inputs['attention_mask'] = mask.to(device)
  return inputs, lengths


def split_output(value: Any, n: int, lengths: Optional[list[int]]) -> list:
  """One entry per example; token-level outputs (batch, longest, ...) are
  trimmed to each example's own length when the batch was padded."""
  torch = sys.modules.get('torch')
  if torch is not None and isinstance(value, torch.Tensor):
    if value.dim() == 0 or value.shape[0] != n:
      return [value] * n
    rows = list(value.unbind(0))
    if lengths is not None and value.dim() >= 2 and value.shape[1] == max(
        lengths):
      rows = [row[:length] for row, length in zip(rows, lengths)]
    return rows
  if isinstance(value, (tuple, list)):
    parts = [split_output(v, n, lengths) for v in value]
    return [tuple(p[i] for p in parts) for i in range(n)]
  if value is None:
    return [None] * n
  try:
    return list(value)
  except TypeError:
    return [value] * n


def to_hf_results(batch, predictions, model_id, lengths=None):
  n = len(batch)
  if isinstance(predictions, dict):  # includes transformers' ModelOutput
    columns = {k: split_output(v, n, lengths) for k, v in predictions.items()}
    rows = [{k: col[i] for k, col in columns.items()} for i in range(n)]
    return to_results(batch, rows, model_id)
  return to_results(batch, split_output(predictions, n, lengths), model_id)


def tf_unbatch(tf, predictions):
  if isinstance(predictions, dict):
    return {k: tf_unbatch(tf, v) for k, v in predictions.items()}
  if tf.is_tensor(predictions) and predictions.shape.rank:
    return tf.unstack(predictions)
  return predictions


def tensor_bytes(t: Any) -> int:
  if hasattr(t, 'element_size') and hasattr(t, 'nelement'):
    return t.element_size() * t.nelement()
  if hasattr(t, 'nbytes'):
    return int(t.nbytes)
  return sys.getsizeof(t)
