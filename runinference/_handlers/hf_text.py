"""Length-aware execution of a text pipeline over one batch: count tokens,
run sub-batches of similar length under a token budget, results back in
input order, each result independent of what it was batched with (token-level
outputs cut to the example's own tokens, as when run one at a time).

The feature-extraction pipeline is run directly (tokenize a sub-batch with
padding, one forward pass, each row cut to its length): the pipeline's own
per-item machinery costs more than the model on short texts."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ..exceptions import InvalidInputError
from . import sub_batches
from .common import require
from .hf_tokenize import token_lengths


def _call_params(pipeline: Any, call_args: dict) -> Optional[tuple]:
  """(tokenize kwargs, forward kwargs, postprocess kwargs) of a call, merged
  with those the pipeline was built with; None if the pipeline has no
  tokenizer or does not say."""
  sanitize = getattr(pipeline, '_sanitize_parameters', None)
  if getattr(pipeline, 'tokenizer', None) is None or sanitize is None:
    return None
  try:
    pre, forward, post = sanitize(**call_args)
  except Exception:  # pylint: disable=broad-except  # let the real call say
    return None
  return ({**getattr(pipeline, '_preprocess_params', {}), **pre},
          {**getattr(pipeline, '_forward_params', {}), **forward},
          {**getattr(pipeline, '_postprocess_params', {}), **post})


def _is_feature_extraction(pipeline: Any, forward: dict, post: dict) -> bool:
  return (type(pipeline).__name__ == 'FeatureExtractionPipeline' and
          not forward and set(post) <= {'return_tensors'} and
          callable(getattr(pipeline, 'model', None)))


def _rows(hidden: Any, lengths: list[int], left: bool, as_tensors: bool):
  """One ``[1, tokens, hidden]`` output per example (the pipeline's form),
  cut to the example's own tokens."""
  longest = hidden.shape[1]
  if as_tensors:
    return [
        hidden[i:i + 1, longest - n:] if left else hidden[i:i + 1, :n]
        for i, n in enumerate(lengths)
    ]
  # numpy's tolist is ~1.5x torch's, and cutting first converts no padding.
  array = hidden.detach().cpu().numpy()
  return [[(array[i, longest - n:] if left else array[i, :n]).tolist()]
          for i, n in enumerate(lengths)]


def _feature_extraction(pipeline: Any, texts: list, tokenize: dict,
                        as_tensors: bool) -> list:
  torch = require('torch', 'HuggingFacePipelineModelHandler')
  tokenizer = pipeline.tokenizer
  encoded = tokenizer(texts, return_tensors='pt', padding=True, **tokenize)
  device = getattr(pipeline, 'device', None)
  if device is not None:
    encoded = {k: v.to(device) for k, v in encoded.items()}
  with torch.inference_mode():
    hidden = pipeline.model(**encoded)[0]
  mask = encoded.get('attention_mask')
  lengths = ([hidden.shape[1]] * len(texts) if mask is None else
             mask.sum(dim=1).tolist())
  left = getattr(tokenizer, 'padding_side', 'right') == 'left'
  return _rows(hidden, lengths, left, as_tensors)


def _trim(output: Any, n: int) -> Any:
  """A feature-extraction output ``[1, tokens, hidden]`` cut to ``n``
  tokens (right padding)."""
  if isinstance(output, list) and len(output) == 1 and isinstance(
      output[0], list):
    return [output[0][:n]]
  shape = getattr(output, 'shape', None)
  if shape is not None and len(shape) == 3:
    return output[:, :n]
  return output


def _token_limit(pipeline: Any) -> Optional[int]:
  """The most tokens the model takes, as its tokenizer (or else its config)
  says; None when neither says (e.g. relative positions)."""
  limit = getattr(pipeline.tokenizer, 'model_max_length', None)
  if isinstance(limit, int) and 0 < limit < 1_000_000:  # else "no limit"
    return limit
  config = getattr(getattr(pipeline, 'model', None), 'config', None)
  limit = getattr(config, 'max_position_embeddings', None)
  return limit if isinstance(limit, int) and limit > 0 else None


def _truncates(tokenize: dict) -> bool:
  return tokenize.get('truncation') not in (None, False, 'do_not_truncate')


def check_lengths(pipeline: Any, lengths: list[int],
                  limit: Optional[int]) -> None:
  """A text longer than ``limit`` (the model's, when the call does not
  truncate) is an error naming it and the fix: the model itself fails with
  a tensor-size mismatch."""
  if limit is None:
    return
  too_long = [(i, n) for i, n in enumerate(lengths) if n > limit]
  if not too_long:
    return
  i, n = too_long[0]
  fix = ("inference_args={'tokenize_kwargs': {'truncation': True}}"
         if type(pipeline).__name__ == 'FeatureExtractionPipeline' else
         "inference_args={'truncation': True}")
  raise InvalidInputError(
      f'Text {i} of the batch has {n} tokens; the model takes at most '
      f'{limit} ({len(too_long)} of the batch\'s {len(lengths)} texts are '
      f'longer). Truncate them with RunInference(..., {fix}), or split '
      'them before RunInference.')


def run_text_batch(pipeline: Any, texts: Sequence[str], call_args: dict,
                   budget: sub_batches.TokenBudget) -> Optional[list]:
  """The pipeline's outputs for ``texts`` (strings), length-aware under
  ``budget``; None if this pipeline cannot be run that way (then call it as
  it is)."""
  params = _call_params(pipeline, {
      k: v for k, v in call_args.items() if k != 'batch_size'})
  if params is None:
    return None
  tokenize, forward, post = params
  fast = _is_feature_extraction(pipeline, forward, post)
  if fast:
    as_tensors = bool(post.get('return_tensors'))
    run = lambda sub: _feature_extraction(pipeline, sub, tokenize, as_tensors)
  else:
    run = lambda sub: pipeline(sub, **{**call_args, 'batch_size': len(sub)})
  limit = None if _truncates(tokenize) else _token_limit(pipeline)
  if len(texts) == 1 and limit is None:
    return sub_batches.run_planned(list(texts), [[0]], run)
  lengths = token_lengths(pipeline.tokenizer, texts, tokenize)
  check_lengths(pipeline, lengths, limit)
  if len(texts) == 1:
    return sub_batches.run_planned(list(texts), [[0]], run)
  device = getattr(getattr(pipeline, 'device', None), 'type', 'cpu')
  outputs = budget.run(list(texts), lengths, device != 'cpu', run)
  if not fast and type(pipeline).__name__ == 'FeatureExtractionPipeline':
    outputs = [_trim(o, n) for o, n in zip(outputs, lengths)]
  return outputs
