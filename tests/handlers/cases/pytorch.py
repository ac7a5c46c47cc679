import pytest

torch = pytest.importorskip('torch')

from runinference.pytorch_inference import (  # noqa: E402
    PytorchModelHandlerKeyedTensor, PytorchModelHandlerTensor)
from tests.handlers.cases import HandlerCase  # noqa: E402


class TimesFive(torch.nn.Module):
  def __init__(self, dim: int = 1):
    super().__init__()
    self.linear = torch.nn.Linear(dim, 1)
    with torch.no_grad():
      self.linear.weight.fill_(5.0)
      self.linear.bias.fill_(0.0)

  def forward(self, x):
    return self.linear(x)


class KeyedSum(torch.nn.Module):
  def forward(self, a, b):
    return (a + b).sum(dim=1)


def _state_dict_handler(tmp_path, **options):
  path = tmp_path / 'five.pt'
  torch.save(TimesFive().state_dict(), path)
  return PytorchModelHandlerTensor(
      state_dict_path=str(path), model_class=TimesFive,
      model_params={'dim': 1}, **options)


def _keyed_handler(tmp_path, **options):
  path = tmp_path / 'sum.pt'
  torch.jit.save(torch.jit.script(KeyedSum()), str(path))
  return PytorchModelHandlerKeyedTensor(torch_script_model_path=str(path),
                                         **options)


def _check_five(example, inference):
  assert float(inference) == pytest.approx(5 * float(example[0]))


CASES = [
    HandlerCase(
        name='pytorch-tensor',
        make_handler=_state_dict_handler,
        make_examples=lambda: [torch.tensor([float(i)]) for i in range(3)],
        bad_example='not a tensor',
        expected_namespace='BeamML_PyTorch',
        check=_check_five),
    HandlerCase(
        name='pytorch-keyed-tensor',
        make_handler=_keyed_handler,
        make_examples=lambda: [{
            'a': torch.ones(2) * i, 'b': torch.ones(2)
        } for i in range(3)],
        bad_example=torch.ones(2),
        expected_namespace='BeamML_PyTorch'),
]
