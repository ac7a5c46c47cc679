"""Options are checked when they are given: a misspelled option names the
intended one, bad values and missing companions are configuration errors,
``exc_class`` must be a class (not its name)."""
import apache_beam as beam
import pytest

from runinference.base import RunInference
from runinference.exceptions import ConfigurationError, ConfigurationTypeError
from tests.helpers import MultiplierHandler


def test_exc_class_as_a_string_is_rejected_at_construction():
  with pytest.raises(ConfigurationTypeError, match="not a string"):
    RunInference(MultiplierHandler()).with_exception_handling(
        exc_class='ValueError')


def test_misspelled_handler_option_names_the_intended_one():
  with pytest.raises(TypeError, match="'max_batchsize'.*'max_batch_size'"):
    MultiplierHandler(max_batchsize=2)


@pytest.mark.parametrize('copies', [0, -3, 1.5, True])
def test_model_copies_must_be_a_positive_int(copies):
  with pytest.raises(ConfigurationError, match='model_copies'):
    MultiplierHandler(model_copies=copies)


def test_runinference_option_typo_names_the_intended_one():
  with pytest.raises(TypeError, match="'intervall'.*'interval'"):
    RunInference(MultiplierHandler(), intervall=3)
