"""tft transforms: values checked against numpy / scikit-learn (and
TensorFlow's own hashes where TensorFlow is installed). One write-mode
pipeline computes every column; the tests read its rows."""
import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from runinference.transforms import tft
from runinference.transforms._stats import QuantilesCombineFn
from runinference.transforms.base import MLTransform

from .mltransform_helpers import run

N = 200
RNG = np.random.RandomState(7)
WORDS = np.array(['apple', 'Banana', 'cherry', 'date', 'elder', 'fig', 'grape'])
P = np.array([.3, .2, .15, .15, .1, .05, .05])


def _data():
  rows = []
  for i in range(N):
    doc = [str(t) for t in RNG.choice(WORDS, RNG.randint(1, 6), p=P)]
    rows.append({
        'id': i,
        'num': float(RNG.lognormal(1, 1)),
        'num2': float(RNG.normal(0, 5)),
        'vec': [float(v) for v in RNG.normal([0, 10, 100], [1, 2, 3])],
        'cnt': int(RNG.randint(0, 1000)),
        'bucket_in': float(RNG.uniform(-5, 5)),
        'words': ' '.join(doc),
        'tok': doc,
        'tok_top': doc,
        'tok_oov': doc,
        'tok_tfidf': doc,
        'cat': str(RNG.choice(WORDS, p=P)),
        'hash_me': doc,
        'hash_key': doc,
        'ngram_in': doc,
        'dup': doc,
    })
  return rows


DATA = _data()


@pytest.fixture(scope='module')
def out(tmp_path_factory):
  loc = str(tmp_path_factory.mktemp('tft') / 'a')
  transforms = [
      tft.ScaleToZScore(columns=['num']),
      tft.ScaleTo01(columns=['num2']),
      tft.ScaleToZScore(columns=['vec'], elementwise=True),
      tft.ScaleByMinMax(columns=['cnt'], min_value=-1, max_value=1),
      tft.Bucketize(columns=['num2'], num_buckets=4),  # after ScaleTo01: 2nd pass
      tft.ApplyBuckets(columns=['bucket_in'], bucket_boundaries=[-2, 0, 2.5]),
      tft.ComputeAndApplyVocabulary(columns=['words'], split_string_by_delimiter=' '),
      tft.ComputeAndApplyVocabulary(columns=['tok_top'], top_k=3, default_value=-7),
      tft.ComputeAndApplyVocabulary(columns=['tok_oov'], frequency_threshold=60,
                                    num_oov_buckets=3),
      tft.ComputeAndApplyVocabulary(columns=['tok_tfidf']),
      tft.TFIDF(columns=['tok_tfidf']),
      tft.HashStrings(columns=['hash_me'], hash_buckets=97),
      tft.HashStrings(columns=['hash_key'], hash_buckets=13, key=[123, 456]),
      tft.NGrams(columns=['ngram_in'], ngram_range=(1, 2), ngrams_separator='_'),
      tft.DeduplicateTensorPerRow(columns=['dup']),
  ]
  rows = run(DATA, MLTransform(write_artifact_location=loc, transforms=transforms))
  return {r['id']: r for r in rows}, loc


def _col(out, name):
  rows, _ = out
  return np.stack([rows[i][name] for i in range(N)])


def test_z_score_matches_standard_scaler(out):
  x = np.asarray([r['num'] for r in DATA], dtype=np.float32).reshape(-1, 1)
  expected = StandardScaler().fit_transform(x.astype(np.float64))
  got = _col(out, 'num')
  assert got.dtype == np.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_elementwise_z_score_matches_standard_scaler(out):
  x = np.asarray([r['vec'] for r in DATA], dtype=np.float32).astype(np.float64)
  np.testing.assert_allclose(_col(out, 'vec'), StandardScaler().fit_transform(x),
                             rtol=1e-5, atol=1e-5)


def test_scale_by_min_max_matches_min_max_scaler(out):
  x = np.asarray([[r['cnt']] for r in DATA], dtype=np.float64)
  expected = MinMaxScaler(feature_range=(-1, 1)).fit_transform(x)
  np.testing.assert_allclose(_col(out, 'cnt'), expected, rtol=1e-6, atol=1e-6)


def test_bucketize_after_scaling_has_equal_population_buckets(out):
  x = np.asarray([[r['num2']] for r in DATA], dtype=np.float32)
  scaled = MinMaxScaler().fit_transform(x.astype(np.float64)).astype(np.float32).ravel()
  s = np.sort(scaled)
  # Boundary i: smallest value whose rank exceeds i*n/k (TensorFlow
  # Transform's rule); numpy's quantiles agree to within one rank.
  bounds = [s[int(np.floor(i * N / 4))] for i in (1, 2, 3)]
  np.testing.assert_allclose(bounds, np.quantile(s, [.25, .5, .75]),
                             atol=float(np.max(np.diff(s))) + 1e-6)
  got = _col(out, 'num2').ravel()
  np.testing.assert_array_equal(got, np.searchsorted(bounds, scaled, side='right'))
  assert np.bincount(got).tolist() == [50, 50, 50, 50]


def test_apply_buckets_matches_numpy_digitize(out):
  x = np.asarray([r['bucket_in'] for r in DATA], dtype=np.float32)
  np.testing.assert_array_equal(
      _col(out, 'bucket_in').ravel(), np.digitize(x, [-2, 0, 2.5], right=False))


def _counts(docs):
  counts = {}
  for d in docs:
    for t in d:
      counts[t] = counts.get(t, 0) + 1
  return counts


def _order(counts):
  # most frequent first, ties by decreasing token (bytes order)
  return sorted(counts, key=lambda t: (counts[t], t.encode()), reverse=True)


def test_vocabulary_order_and_ties(out):
  vocab = _order(_counts([r['words'].split(' ') for r in DATA]))
  rows, _ = out
  for i in range(N):
    np.testing.assert_array_equal(
        rows[i]['words'], [vocab.index(t) for t in DATA[i]['words'].split(' ')])
  assert rows[0]['words'].dtype == np.int64


def test_vocabulary_top_k_and_default_value(out):
  vocab = _order(_counts([r['tok'] for r in DATA]))[:3]
  rows, _ = out
  for i in range(N):
    expected = [vocab.index(t) if t in vocab else -7 for t in DATA[i]['tok']]
    np.testing.assert_array_equal(rows[i]['tok_top'], expected)


def test_vocabulary_threshold_and_oov_buckets(out):
  import farmhash
  counts = _counts([r['tok'] for r in DATA])
  vocab = [t for t in _order(counts) if counts[t] >= 60]
  assert 0 < len(vocab) < len(counts)
  rows, _ = out
  for i in range(N):
    expected = [vocab.index(t) if t in vocab else
                len(vocab) + farmhash.fingerprint64(t.encode()) % 3
                for t in DATA[i]['tok']]
    np.testing.assert_array_equal(rows[i]['tok_oov'], expected)


def test_tfidf_matches_scikit_learn(out):
  rows, _ = out
  docs = [rows[i]['tok_tfidf'] for i in range(N)]
  size = max(int(d.max()) for d in docs) + 1
  counts = np.zeros((N, size))
  for i, d in enumerate(docs):
    np.add.at(counts[i], d, 1)
  # TensorFlow Transform's tf is count / document length; scikit-learn's
  # smooth idf is the same ln((1 + n) / (1 + df)) + 1.
  expected = TfidfTransformer(norm=None, smooth_idf=True).fit_transform(counts).toarray()
  expected /= counts.sum(axis=1, keepdims=True)
  for i in range(N):
    idx = rows[i]['tok_tfidf_vocab_index']
    np.testing.assert_array_equal(idx, np.nonzero(counts[i])[0])
    np.testing.assert_allclose(rows[i]['tok_tfidf_tfidf_weight'], expected[i, idx], rtol=1e-6)
    assert rows[i]['tok_tfidf_tfidf_weight'].dtype == np.float32


def test_hash_strings_match_tensorflow(out):
  tf = pytest.importorskip('tensorflow')
  rows, _ = out
  for i in range(0, N, 17):
    toks = DATA[i]['tok']
    np.testing.assert_array_equal(
        rows[i]['hash_me'], tf.strings.to_hash_bucket_fast(toks, 97).numpy())
    np.testing.assert_array_equal(
        rows[i]['hash_key'],
        tf.strings.to_hash_bucket_strong(toks, 13, [123, 456]).numpy())


def test_keyed_hash_matches_tensorflow_on_all_tail_lengths():
  tf = pytest.importorskip('tensorflow')
  from runinference.transforms._hashing import hash_buckets
  toks = [bytes(range(65, 65 + n)) for n in range(0, 40)]
  assert hash_buckets(toks, 2**31 - 1, [7, 2**62 + 3]) == tf.strings.to_hash_bucket_strong(
      toks, 2**31 - 1, [7, 2**62 + 3]).numpy().tolist()


def test_ngrams_and_dedupe(out):
  rows, _ = out
  for i in range(N):
    toks = DATA[i]['tok']
    expected = []
    for s in range(len(toks)):
      expected.append(toks[s])
      if s + 1 < len(toks):
        expected.append(toks[s] + '_' + toks[s + 1])
    assert rows[i]['ngram_in'].tolist() == [t.encode() for t in expected]
    assert rows[i]['dup'].tolist() == [t.encode() for t in dict.fromkeys(toks)]


def test_read_mode_reproduces_write_mode(out):
  rows, loc = out
  again = {r['id']: r for r in run(DATA, MLTransform(read_artifact_location=loc))}
  for i in range(N):
    for k, v in rows[i].items():
      if isinstance(v, np.ndarray):
        np.testing.assert_array_equal(again[i][k], v, err_msg=k)


def test_quantile_sketch_is_exact_then_close_to_numpy_when_compressed():
  rng = np.random.RandomState(0)
  x = rng.lognormal(0, 1, 50_000)
  for cap, tol in ((10**6, 0.0), (2_000, 0.002)):
    fn = QuantilesCombineFn(10, capacity=cap)
    accs = [fn.add_input(fn.create_accumulator(), part) for part in np.array_split(x, 25)]
    bounds = np.asarray(fn.extract_output(fn.merge_accumulators(accs)))
    # Rank of each boundary vs its target rank i*n/10 (tolerance in rank share).
    ranks = np.searchsorted(np.sort(x), bounds, side='left') / len(x)
    np.testing.assert_allclose(ranks, np.arange(1, 10) / 10, atol=tol + 1e-9)


def test_reference_examples():
  """Small cases of Beam's own tests (expected values from TensorFlow
  Transform), computed here directly on numpy arrays."""
  from runinference.transforms import _ops
  x = np.arange(1, 7, dtype=np.float32)
  np.testing.assert_array_equal(
      _ops.z_score(x, x.astype(np.float64).mean(), x.astype(np.float64).var()),
      np.array([-1.46385, -0.87831, -0.29277, 0.29277, 0.87831, 1.46385], np.float32))
  np.testing.assert_allclose(
      _ops.buckets_with_interpolation(np.array([15, 20, 25], np.float32), [10, 20]), [.5, 1, 1])
  np.testing.assert_allclose(
      _ops.min_max(np.array([3.0], np.float32), 3.0, 3.0, 0.0, 1.0), [0.95257413])
