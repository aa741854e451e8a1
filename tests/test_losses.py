"""Tests of cnnbench.losses: Keras 3 reference values, the literature losses' formulas, `adapt`,
registration, resolve, class weights and label noise. Keep it fast (< 40 s on 2 cores).

The Keras numbers in KERAS_REFERENCE were produced once with keras 3.15.1 (KERAS_BACKEND=torch,
torch 2.14.1, float32) by running this file as a script:

    KERAS_BACKEND=torch PYTHONPATH=src python tests/test_losses.py

which prints the table below; `test_against_keras_live` recomputes them with Keras itself when it
is importable.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pytest
import torch

import cnnbench
from cnnbench import losses
from cnnbench.errors import UnknownNameError, UserError

# --------------------------------------------------------------------------------------------------
# Literal inputs (4 samples, 3 classes)
# --------------------------------------------------------------------------------------------------
INPUTS = {
    "Y": [[1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 1, 0]],  # one-hot, labels [0, 2, 2, 1]
    "YS": [[0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0], [0.3, 0.4, 0.3]],  # soft labels
    "YPM": [[1, -1, -1], [-1, -1, 1], [-1, -1, 1], [-1, 1, -1]],  # -1/+1 labels
    "S": [0, 2, 2, 1],  # sparse labels
    "P": [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5], [0.05, 0.9, 0.05]],  # probabilities
    "PU": [[0.9, 0.3, 0.0], [0.2, 0.2, 0.4], [0.0, 0.0, 1.0], [0.5, 1.0, 0.5]],  # unnormalised, 0s and 1s
    "Z": [[2.0, -1.0, 0.5], [0.1, 0.2, -0.3], [-2.0, 1.5, 3.0], [0.0, 4.0, -4.0]],  # logits
}
WEIGHTS = [0.5, 1.0, 2.0, 0.0]

# (Keras class, options, y_true, y_pred)
KERAS_CASES = [
    ("BinaryCrossentropy", {}, "Y", "P"),
    ("BinaryCrossentropy", {}, "YS", "PU"),
    ("BinaryCrossentropy", {"label_smoothing": 0.2}, "Y", "P"),
    ("BinaryCrossentropy", {"from_logits": True}, "YS", "Z"),
    ("BinaryFocalCrossentropy", {}, "Y", "P"),
    ("BinaryFocalCrossentropy", {}, "YS", "PU"),
    ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "alpha": 0.3, "gamma": 3.0}, "Y", "P"),
    ("BinaryFocalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "Y", "Z"),
    ("CategoricalCrossentropy", {}, "Y", "P"),
    ("CategoricalCrossentropy", {}, "YS", "PU"),
    ("CategoricalCrossentropy", {"label_smoothing": 0.2}, "Y", "P"),
    ("CategoricalCrossentropy", {"from_logits": True, "label_smoothing": 0.1}, "Y", "Z"),
    ("CategoricalFocalCrossentropy", {}, "Y", "P"),
    ("CategoricalFocalCrossentropy", {}, "YS", "PU"),
    ("CategoricalFocalCrossentropy", {"alpha": [0.2, 0.3, 0.5], "gamma": 1.0, "label_smoothing": 0.1}, "Y", "P"),
    ("CategoricalFocalCrossentropy", {"from_logits": True}, "Y", "Z"),
    ("SparseCategoricalCrossentropy", {}, "S", "P"),
    ("SparseCategoricalCrossentropy", {}, "S", "PU"),
    ("SparseCategoricalCrossentropy", {"from_logits": True}, "S", "Z"),
    ("SparseCategoricalCrossentropy", {"ignore_class": 2}, "S", "P"),
    ("CategoricalGeneralizedCrossEntropy", {}, "S", "P"),
    ("CategoricalGeneralizedCrossEntropy", {"q": 0.8}, "S", "PU"),
    ("CategoricalHinge", {}, "Y", "P"),
    ("CategoricalHinge", {}, "YS", "Z"),
    ("Hinge", {}, "Y", "P"),
    ("Hinge", {}, "YPM", "Z"),
    ("Hinge", {}, "YS", "P"),
    ("SquaredHinge", {}, "Y", "P"),
    ("SquaredHinge", {}, "YPM", "Z"),
    ("MeanSquaredError", {}, "Y", "P"),
    ("MeanSquaredError", {}, "YS", "Z"),
    ("MeanAbsoluteError", {}, "Y", "P"),
    ("MeanAbsoluteError", {}, "YS", "Z"),
    ("MeanAbsolutePercentageError", {}, "Y", "P"),
    ("MeanAbsolutePercentageError", {}, "YS", "PU"),
    ("MeanSquaredLogarithmicError", {}, "Y", "P"),
    ("MeanSquaredLogarithmicError", {}, "YS", "Z"),
    ("LogCosh", {}, "Y", "P"),
    ("LogCosh", {}, "YS", "Z"),
    ("Huber", {}, "YS", "Z"),
    ("Huber", {"delta": 0.3}, "Y", "P"),
    ("KLDivergence", {}, "Y", "P"),
    ("KLDivergence", {}, "YS", "PU"),
    ("Poisson", {}, "Y", "P"),
    ("Poisson", {}, "YS", "PU"),
    ("CosineSimilarity", {}, "Y", "P"),
    ("CosineSimilarity", {}, "YS", "Z"),
    ("Dice", {}, "Y", "P"),
    ("Dice", {"axis": 1}, "YS", "PU"),
    ("Tversky", {}, "Y", "P"),
    ("Tversky", {"alpha": 0.3, "beta": 0.7, "axis": 1}, "YS", "PU"),
]

REDUCTION_CASES = [(r, w) for r in ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none")
                   for w in (False, True)]


def _case_id(case) -> str:
    cls, options, yt, yp = case
    opts = ",".join(f"{k}={v}" for k, v in options.items())
    return f"{cls}({opts}):{yt},{yp}"


# {case: ([per-sample values, reduction="none"], value with sample_weight=WEIGHTS and the default reduction)}
KERAS_REFERENCE = {
    'BinaryCrossentropy():Y,P': ([0.22839302, 0.74187469, 0.42283711, 0.069315709], 0.42543638),
    'BinaryCrossentropy():YS,PU': ([0.86600661, 0.61766416, 1.064031e-07, 3.6505756], 0.26266694),
    'BinaryCrossentropy(label_smoothing=0.2):Y,P': ([0.37608686, 0.77335674, 0.49607792, 0.33885244], 0.48838902),
    'BinaryCrossentropy(from_logits=True):YS,Z': ([0.62142223, 0.72229689, 0.6256429, 1.443149], 0.57107341),
    'BinaryFocalCrossentropy():Y,P': ([0.014026698, 0.30695498, 0.06974902, 0.00043669087], 0.11336659),
    'BinaryFocalCrossentropy():YS,PU': ([0.034657788, 0.10730232, 0.0, 1.2633764], 0.031157803),
    'BinaryFocalCrossentropy(apply_class_balancing=True,alpha=0.3,gamma=3.0):Y,P': ([0.0014041411, 0.087501906, 0.010762022, 1.3528174e-05], 0.027432004),  # noqa: E501  (Keras reference values, one case a line)
    'BinaryFocalCrossentropy(from_logits=True,label_smoothing=0.1):Y,Z': ([0.12999853, 0.2352186, 0.33721444, 0.058399379], 0.24366169),  # noqa: E501  (Keras reference values, one case a line)
    'CategoricalCrossentropy():Y,P': ([0.35667497, 1.2039728, 0.69314718, 0.10536054], 0.69215119),
    'CategoricalCrossentropy():YS,PU': ([1.9805847, 1.0397208, 1.192093e-07, 1.1090355], 0.50750333),
    'CategoricalCrossentropy(label_smoothing=0.2):Y,P': ([0.56991982, 1.2310038, 0.78556681, 0.49074346], 0.77177429),
    'CategoricalCrossentropy(from_logits=True,label_smoothing=0.1):Y,Z': ([0.39131135, 1.3908277, 0.42357367, 0.41847938], 0.60840768),  # noqa: E501  (Keras reference values, one case a line)
    'CategoricalFocalCrossentropy():Y,P': ([0.0080251871, 0.14748666, 0.043321699, 0.00026340145], 0.059535664),
    'CategoricalFocalCrossentropy():YS,PU': ([0.42604309, 0.11913468, 4.2351652e-22, 0.13429728], 0.08303906),
    'CategoricalFocalCrossentropy(alpha=[0.2, 0.3, 0.5],gamma=1.0,label_smoothing=0.1):Y,P': ([0.067388088, 0.40915662, 0.17906302, 0.069355503], 0.20024417),  # noqa: E501  (Keras reference values, one case a line)
    'CategoricalFocalCrossentropy(from_logits=True):Y,Z': ([0.0027731881, 0.20435084, 0.0018069881, 1.5487547e-06], 0.052337855),  # noqa: E501  (Keras reference values, one case a line)
    'SparseCategoricalCrossentropy():S,P': ([0.35667497, 1.2039728, 0.69314718, 0.10536054], 0.69215119),
    'SparseCategoricalCrossentropy():S,PU': ([0.28768215, 0.69314718, 1.192093e-07, 0.69314718], 0.20924713),
    'SparseCategoricalCrossentropy(from_logits=True):S,Z': ([0.24131133, 1.4208276, 0.20690699, 0.018479329], 0.48882431),  # noqa: E501  (Keras reference values, one case a line)
    'SparseCategoricalCrossentropy(ignore_class=2):S,P': ([0.35667497, 0.0, 0.0, 0.10536054], 0.089168742),
    'CategoricalGeneralizedCrossEntropy():S,P': ([0.32667994, 0.90455484, 0.58578646, 0.10263348], 0.55986691),
    'CategoricalGeneralizedCrossEntropy(q=0.8):S,PU': ([0.10104239, 0.64943773, 0.0, 0.0], 0.17498973),
    'CategoricalHinge():Y,P': ([0.5, 1.3, 0.75, 0.15000004], 0.76249999),
    'CategoricalHinge():YS,Z': ([0.0, 1.21, 0.0, 3.0], 0.30250001),
    'Hinge():Y,P': ([0.86666662, 1.1333333, 1.0, 0.73333329], 0.89166665),
    'Hinge():YPM,Z': ([0.5, 1.2, 0.83333331, 0.33333334], 0.7791667),
    'Hinge():YS,P': ([0.80333334, 0.88333338, 0.83333331, 0.87000006], 0.73791671),
    'SquaredHinge():Y,P': ([0.91333342, 1.4200001, 1.125, 0.73833323], 1.0316668),
    'SquaredHinge():YPM,Z': ([0.75, 1.4466667, 2.0833333, 0.33333334], 1.4970833),
    'MeanSquaredError():Y,P': ([0.046666671, 0.28666666, 0.125, 0.0050000018], 0.14),
    'MeanSquaredError():YS,Z': ([0.93666673, 0.22000001, 3.4166667, 10.513333], 1.8804168),
    'MeanAbsoluteError():Y,P': ([0.2, 0.4666667, 0.33333334, 0.06666667], 0.30833334),
    'MeanAbsoluteError():YS,Z': ([0.9000001, 0.33333334, 1.8333334, 2.7333333], 1.1125001),
    'MeanAbsolutePercentageError():Y,P': ([100000010.0, 233333340.0, 166666690.0, 33333338.0], 154166690.0),
    'MeanAbsolutePercentageError():YS,PU': ([104.16667, 17.777777, 0.0, 94.444435], 17.465279),
    'MeanSquaredLogarithmicError():Y,P': ([0.022912512, 0.13852043, 0.060782313, 0.0024639776], 0.067885324),
    'MeanSquaredLogarithmicError():YS,Z': ([0.12207431, 0.059459891, 0.44001386, 0.5860371], 0.25013119),
    'LogCosh():Y,P': ([0.023066858, 0.13413243, 0.060658019, 0.0024968784], 0.066745475),
    'LogCosh():YS,Z': ([0.39452615, 0.10024562, 1.1684818, 2.1863258], 0.65861809),
    'Huber():YS,Z': ([0.46000004, 0.11000001, 1.3333334, 2.3150001], 0.75166667),
    'Huber(delta=0.3):Y,P': ([0.023333335, 0.10166667, 0.055833336, 0.0025000009], 0.056250002),
    'KLDivergence():Y,P': ([0.35667214, 1.2039698, 0.69314426, 0.10535794], 0.69214857),
    'KLDivergence():YS,PU': ([1.1774635, 0.23321131, 0.0, -0.67301166], 0.20548576),
    'Poisson():Y,P': ([0.45222494, 0.73465753, 0.56438231, 0.36845341], 0.52238369),
    'Poisson():YS,PU': ([1.0054984, 0.6876213, 0.33333328, 0.805296], 0.46425927),
    'CosineSimilarity():Y,P': ([-0.95257938, -0.44232586, -0.81649655, -0.9969278], -0.63790214),
    'CosineSimilarity():YS,Z': ([-0.83268362, 0.30348849, -0.76822126, -0.1212678], -0.41232395),
    'Dice():Y,P': ([0.40000004], 0.35000002),
    'Dice(axis=1):YS,PU': ([0.31818181, 0.66666663, 0.0, 0.5333333], 0.20643938),
    'Tversky():Y,P': ([0.39999998], 0.34999996),
    'Tversky(alpha=0.3,beta=0.7,axis=1):YS,PU': ([0.34210533, 0.65116286, 1.1920929e-07, 0.58823532], 0.20555395),
}
# {(reduction, weighted): value} for CategoricalCrossentropy on Y, P
KERAS_REDUCTIONS = {
    ('sum_over_batch_size', False): 0.58978885,
    ('sum_over_batch_size', True): 0.69215119,
    ('sum', False): 2.3591554,
    ('sum', True): 2.7686048,
    ('mean', False): 0.58978885,
    ('mean', True): 0.69215119,
    ('mean_with_sample_weight', False): 0.58978885,
    ('mean_with_sample_weight', True): 0.79102993,
    ('none', False): [0.35667497, 1.2039728, 0.69314718, 0.10536054],
    ('none', True): [0.17833748, 1.2039728, 1.3862944, 0.0],
}


def _t(key, dtype=torch.float32):
    return torch.tensor(INPUTS[key], dtype=torch.int64 if key == "S" else dtype)


# --------------------------------------------------------------------------------------------------
# Keras 3 reference values
# --------------------------------------------------------------------------------------------------
def test_documented_keras_values():
    bce = losses.get("BinaryCrossentropy", reduction="none")
    y_true = [[0, 1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]
    y_pred = [[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.8, 0.2]]
    expected = torch.tensor([0.9162905, 0.5919184, 0.79465103, 1.0549198])
    torch.testing.assert_close(bce(y_true, y_pred), expected, rtol=1e-5, atol=0)
    cce = losses.get("categorical_crossentropy")
    y, p = [[0, 1, 0], [0, 0, 1]], [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]
    assert float(cce(y, p)) == pytest.approx(1.177, abs=1e-3)
    assert float(cce(y, p, sample_weight=torch.tensor([0.3, 0.7]))) == pytest.approx(0.814, abs=1e-3)


def test_reference_table_covers_every_case():
    assert set(KERAS_REFERENCE) == {_case_id(c) for c in KERAS_CASES}
    assert set(KERAS_REDUCTIONS) == set(REDUCTION_CASES)
    keras_names = {c[0] for c in KERAS_CASES}
    assert len(keras_names) == 20  # the whole Keras classification catalogue of the issue


@pytest.mark.parametrize("case", KERAS_CASES, ids=_case_id)
def test_keras_reference_values(case):
    cls, options, yt, yp = case
    per_sample, weighted = KERAS_REFERENCE[_case_id(case)]
    loss = losses.get(cls, reduction="none", **options)
    got = loss(_t(yt), _t(yp))
    torch.testing.assert_close(got, torch.tensor(per_sample, dtype=torch.float32).reshape(got.shape),
                               rtol=1e-5, atol=1e-6)
    got_w = losses.get(cls, **options)(_t(yt), _t(yp), sample_weight=torch.tensor(WEIGHTS))
    assert float(got_w) == pytest.approx(weighted, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("reduction,weighted", REDUCTION_CASES)
def test_keras_reductions(reduction, weighted):
    loss = losses.get("categorical_crossentropy", reduction=reduction)
    got = loss(_t("Y"), _t("P"), sample_weight=torch.tensor(WEIGHTS) if weighted else None)
    expected = torch.tensor(KERAS_REDUCTIONS[(reduction, weighted)], dtype=torch.float32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_reduction_semantics():
    per = torch.tensor([1.0, 2.0, 3.0, 4.0])

    class Identity(losses.Loss):
        def call(self, y_true, y_pred):
            return y_pred

    w = torch.tensor([0.0, 1.0, 1.0, 2.0])
    assert float(Identity()(per, per, w)) == pytest.approx((2 + 3 + 8) / 4)  # divided by N, not sum(w)
    assert float(Identity(reduction="mean_with_sample_weight")(per, per, w)) == pytest.approx(13 / 4)
    assert float(Identity(reduction="mean_with_sample_weight")(per, per, w * 2)) == pytest.approx(26 / 8)
    assert float(Identity(reduction="sum")(per, per, w)) == pytest.approx(13)
    torch.testing.assert_close(Identity(reduction="none")(per, per, w), per * w)
    with pytest.raises(UserError, match="reduction"):
        Identity(reduction="average")


def test_ignore_class_masks_the_reduction():
    loss = losses.get("sparse_categorical_crossentropy", ignore_class=2)
    full = losses.get("sparse_categorical_crossentropy", reduction="none")(_t("S"), _t("P"))
    assert float(loss(_t("S"), _t("P"))) == pytest.approx(float(full[[0, 3]].mean()), rel=1e-6)


def keras_values(case):
    """(per-sample values, weighted default-reduction value) computed by Keras itself."""
    import keras
    import numpy as np

    cls, options, yt, yp = case
    y_true = np.array(INPUTS[yt], dtype="int64" if yt == "S" else "float32")
    y_pred = np.array(INPUTS[yp], dtype="float32")
    k = getattr(keras.losses, cls)
    per = keras.ops.convert_to_numpy(k(reduction="none", **options)(y_true, y_pred))
    weighted = keras.ops.convert_to_numpy(k(**options)(y_true, y_pred, sample_weight=np.array(WEIGHTS, "float32")))
    return [float(v) for v in np.ravel(per)], float(weighted)


def keras_reductions():
    import keras
    import numpy as np

    out = {}
    for reduction, weighted in REDUCTION_CASES:
        k = keras.losses.CategoricalCrossentropy(reduction=reduction)
        v = k(np.array(INPUTS["Y"], "float32"), np.array(INPUTS["P"], "float32"),
              sample_weight=np.array(WEIGHTS, "float32") if weighted else None)
        v = keras.ops.convert_to_numpy(v)
        out[(reduction, weighted)] = [float(x) for x in v] if v.ndim else float(v)
    return out


@pytest.mark.slow
def test_against_keras_live(keras_torch):
    """Differential test: every Keras loss, random inputs, every reduction, with/without weights."""
    keras = keras_torch
    import numpy as np

    rng = np.random.default_rng(0)
    n, c = 6, 5
    logits = rng.normal(0, 2, (n, c)).astype("float32")
    probs = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype("float32")
    raw = rng.uniform(0, 1, (n, c)).astype("float32")
    raw[0, 1] = 0.0
    labels = rng.integers(0, c, n)
    one_hot = np.eye(c, dtype="float32")[labels]
    soft = rng.dirichlet(np.ones(c), n).astype("float32")
    weights = rng.uniform(0, 2, n).astype("float32")
    inputs = []
    for cls in sorted({case[0] for case in KERAS_CASES}):
        if cls in ("SparseCategoricalCrossentropy", "CategoricalGeneralizedCrossEntropy"):
            inputs += [(cls, {}, labels, probs), (cls, {}, labels, raw)]
        else:
            inputs += [(cls, {}, one_hot, probs), (cls, {}, soft, raw)]
    for cls in ("BinaryCrossentropy", "CategoricalCrossentropy", "CategoricalFocalCrossentropy",
                "BinaryFocalCrossentropy"):
        inputs.append((cls, {"from_logits": True, "label_smoothing": 0.1}, one_hot, logits))
    inputs.append(("SparseCategoricalCrossentropy", {"from_logits": True, "ignore_class": 1}, labels, logits))
    worst = 0.0
    for cls, options, y_true, y_pred in inputs:
        for reduction in ("sum_over_batch_size", "sum", "mean_with_sample_weight", "none"):
            for w in (None, weights):
                expected = keras.ops.convert_to_numpy(
                    getattr(keras.losses, cls)(reduction=reduction, **options)(y_true, y_pred, sample_weight=w))
                got = losses.get(cls, reduction=reduction, **options)(
                    torch.from_numpy(y_true), torch.from_numpy(y_pred),
                    sample_weight=None if w is None else torch.from_numpy(w)).numpy()
                assert got.shape == expected.shape, (cls, reduction)
                err = float(np.max(np.abs(got - expected) / np.maximum(np.abs(expected), 1e-6)))
                assert err < 1e-5, (cls, options, reduction, w is not None, got, expected)
                worst = max(worst, err)
    assert worst < 1e-5


# --------------------------------------------------------------------------------------------------
# Literature losses: the docstring formulas, written out independently
# --------------------------------------------------------------------------------------------------
def _softmax(z):
    return torch.softmax(torch.tensor(z, dtype=torch.float64), -1)


def _literature_expected(name, y, p, z):
    """The documented formula on one-hot y, probabilities p = softmax(z), raw scores z (float64)."""
    t = 2 * y - 1
    if name == "expectation_l1":
        return (y - p).abs().sum(-1)
    if name == "expectation_l2":
        return ((y - p) ** 2).sum(-1)
    if name == "chebyshev_expectation":
        return (y - p).abs().amax(-1)
    if name == "cubed_hinge":
        return torch.clamp(0.5 - t * z, min=0).pow(3).sum(-1)
    if name == "squared_log":
        return ((y * p.log()) ** 2).sum(-1)
    if name == "tanimoto":
        dot = (p * y).sum(-1)
        return -dot / ((p * p).sum(-1) + (y * y).sum(-1) - dot)
    if name == "cauchy_schwarz_divergence":
        return -((p * y).sum(-1) / (p.norm(dim=-1) * y.norm(dim=-1))).log()
    if name == "symmetric_crossentropy":
        ce = -(y * p.log()).sum(-1)
        rce = 4.0 * (1 - (p * y).sum(-1))  # -A (1 - p_y), A = -4
        return 0.1 * ce + 1.0 * rce
    if name == "poly_loss":
        return -(y * p.log()).sum(-1) + 1.0 * (1 - (p * y).sum(-1))
    if name == "label_smoothed_crossentropy":
        ys = y * 0.9 + 0.1 / y.shape[-1]
        return -(ys * p.log()).sum(-1)
    if name == "bi_tempered_logistic":
        return None  # checked by its own test (needs the tempered softmax fixed point)
    raise AssertionError(name)


LITERATURE = ["expectation_l1", "expectation_l2", "chebyshev_expectation", "cubed_hinge", "squared_log",
              "tanimoto", "cauchy_schwarz_divergence", "symmetric_crossentropy", "poly_loss",
              "label_smoothed_crossentropy", "bi_tempered_logistic"]


@pytest.mark.parametrize("name", LITERATURE)
def test_literature_formula(name):
    entry = losses.REGISTRY.entry(name)
    doc = entry.factory.__doc__ or ""
    assert any(year in doc for year in ("2016", "2017", "2019", "2022")), "docstring cites the paper"
    y = _t("Y", torch.float64)
    z = torch.tensor(INPUTS["Z"], dtype=torch.float64)
    p = _softmax(INPUTS["Z"])
    expected = _literature_expected(name, y, p, z)
    loss = losses.get(name, reduction="none")
    if expected is not None:
        if getattr(loss, "inputs", "") == "logits":
            got = loss(y, z)
        else:
            got = loss(y, p)
            # the logit path gives the same numbers (the training path)
            logit_loss = losses.get(name, reduction="none", from_logits=True)
            torch.testing.assert_close(logit_loss(y, z), expected, rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


def test_literature_special_cases():
    y, z = _t("Y"), _t("Z")
    p = torch.softmax(z, -1)
    cce = losses.get("categorical_crossentropy", reduction="none", from_logits=True)
    # Poly-1 with epsilon 0 and bi-tempered with t1 = t2 = 1 are CE
    torch.testing.assert_close(losses.get("poly_loss", epsilon=0.0, reduction="none", from_logits=True)(y, z),
                               cce(y, z))
    torch.testing.assert_close(losses.get("bi_tempered_logistic", t1=1.0, t2=1.0, reduction="none")(y, z),
                               cce(y, z), rtol=1e-5, atol=1e-6)
    # label-smoothed CE == Keras CE with label_smoothing, on both paths
    torch.testing.assert_close(losses.get("label_smoothed_crossentropy", reduction="none", from_logits=True)(y, z),
                               losses.get("cce", label_smoothing=0.1, reduction="none", from_logits=True)(y, z))
    torch.testing.assert_close(losses.get("label_smoothed_crossentropy", reduction="none")(y, p),
                               losses.get("cce", label_smoothing=0.1, reduction="none")(y, p), rtol=1e-5, atol=1e-6)
    # cubed hinge with power 1 and 2 are the paper's hinge and squared hinge on raw scores
    t = 2 * y - 1
    torch.testing.assert_close(losses.get("cubed_hinge", power=2, reduction="none")(y, z),
                               torch.clamp(0.5 - t * z, min=0).pow(2).sum(-1))
    # divergences vanish at the target, Tanimoto reaches -1
    assert torch.allclose(losses.get("cauchy_schwarz_divergence", reduction="none")(y, y), torch.zeros(4), atol=1e-6)
    assert torch.allclose(losses.get("tanimoto", reduction="none")(y, y), -torch.ones(4))
    # bi-tempered: bounded for t1 < 1 even for a very wrong prediction, and finite gradients
    zz = torch.tensor([[-30.0, 30.0, 0.0]], requires_grad=True)
    value = losses.get("bi_tempered_logistic", t1=0.5, t2=2.0)(torch.tensor([[1.0, 0.0, 0.0]]), zz)
    value.backward()
    assert float(value.detach()) < 1.0 / (1.0 - 0.5) + 1e-4 and torch.isfinite(zz.grad).all()


# --------------------------------------------------------------------------------------------------
# adapt: every loss trains every classifier
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_classes", [2, 10])
@pytest.mark.parametrize("name", losses.list())
def test_every_loss_trains_through_adapt(name, num_classes):
    torch.manual_seed(0)
    train_loss = losses.adapt(name, num_classes)
    expected_out = 1 if name in ("binary_crossentropy", "binary_focal_crossentropy") and num_classes == 2 \
        else num_classes
    assert train_loss.out_features == expected_out
    outputs = (3 * torch.randn(16, train_loss.out_features)).requires_grad_()
    labels = torch.randint(0, num_classes, (16,))
    value = train_loss(outputs, labels)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert outputs.grad is not None and torch.isfinite(outputs.grad).all() and outputs.grad.abs().sum() > 0
    weighted = train_loss(outputs.detach(), labels, sample_weight=torch.rand(16))
    assert weighted.dim() == 0 and torch.isfinite(weighted)
    probs = train_loss.probabilities(outputs.detach())
    assert probs.shape == (16, num_classes)
    torch.testing.assert_close(probs.sum(-1), torch.ones(16))


def test_adapt_runs_without_host_sync():
    """No `.item()` / data-dependent Python branch: every loss runs on the meta device."""
    for name in losses.list():
        for num_classes in (2, 10):
            train_loss = losses.adapt(name, num_classes)
            outputs = torch.empty(8, train_loss.out_features, device="meta", requires_grad=True)
            labels = torch.empty(8, dtype=torch.int64, device="meta")
            value = train_loss(outputs, labels, sample_weight=torch.empty(8, device="meta"))
            value.backward()
            assert value.shape == ()


def test_adapt_feeds_each_loss_the_keras_way():
    torch.manual_seed(1)
    logits = torch.randn(32, 10)
    labels = torch.randint(0, 10, (32,))
    one_hot = torch.nn.functional.one_hot(labels, 10).float()
    probs = torch.softmax(logits, -1)
    # cross-entropy types: the stable logit path equals Keras' value on probabilities
    for name in ("categorical_crossentropy", "sparse_categorical_crossentropy", "categorical_focal_crossentropy",
                 "poly_loss", "symmetric_crossentropy"):
        keras_style = losses.get(name)
        y = labels if keras_style.labels == "sparse" else one_hot
        torch.testing.assert_close(losses.adapt(name, 10)(logits, labels), keras_style(y, probs), rtol=1e-5, atol=1e-6)
    # probability-space losses get softmax probabilities and one-hot labels
    for name in ("mean_squared_error", "hinge", "kl_divergence", "categorical_hinge", "dice", "poisson"):
        torch.testing.assert_close(losses.adapt(name, 10)(logits, labels), losses.get(name)(one_hot, probs))
    gce = losses.adapt("categorical_generalized_cross_entropy", 10)
    torch.testing.assert_close(gce(logits, labels), losses.get("gce")(labels, probs))
    # a binary loss on 2 classes: one sigmoid unit, probabilities [1 - p, p]
    bce = losses.adapt("binary_crossentropy", 2)
    out = torch.randn(32, 1)
    y2 = torch.randint(0, 2, (32,))
    torch.testing.assert_close(bce(out, y2), losses.get("bce")(y2.float()[:, None], torch.sigmoid(out)))
    p = torch.sigmoid(out[:, 0])
    torch.testing.assert_close(bce.probabilities(out), torch.stack([1 - p, p], -1))
    # ... and one-vs-rest on more classes
    torch.testing.assert_close(losses.adapt("bce", 10)(logits, labels),
                               losses.get("bce", from_logits=True)(one_hot, logits))
    # class weights enter Keras-style: weighted sum divided by N
    w = torch.rand(32)
    per = losses.get("cce", reduction="none")(one_hot, probs)
    torch.testing.assert_close(losses.adapt("cce", 10)(logits, labels, w), (per * w).sum() / 32)
    # the user's loss object is not modified by adapt
    user_loss = losses.get("cce")
    losses.adapt(user_loss, 10)
    assert user_loss.from_logits is False


@pytest.fixture
def scratch_registry(monkeypatch):
    """Losses registered by a test disappear after it (other test files list the registry)."""
    monkeypatch.setattr(losses.REGISTRY, "_entries", dict(losses.REGISTRY._entries))
    monkeypatch.setattr(losses.REGISTRY, "_keys", dict(losses.REGISTRY._keys))


def test_adapt_refuses_what_cannot_apply(scratch_registry):
    @losses.register("test_binary_only_margin", binary=True, binary_only=True,
                     summary="Use it when testing that binary-only losses are refused.")
    def binary_only(y_true, y_pred):
        return torch.clamp(1 - (2 * y_true - 1) * (2 * y_pred - 1), min=0).mean(-1)

    assert losses.adapt("test_binary_only_margin", 2).out_features == 1
    with pytest.raises(UserError, match=r"binary-only.*10-class"):
        losses.adapt("test_binary_only_margin", 10)
    with pytest.raises(UserError, match="num_classes"):
        losses.adapt("cce", 1)
    with pytest.raises(UserError, match="reduction='none'"):
        losses.adapt({"name": "cce", "reduction": "none"}, 10)
    with pytest.raises(UserError, match=r"\[N, 10\]"):
        losses.adapt("cce", 10)(torch.randn(4, 3), torch.zeros(4, dtype=torch.int64))


# --------------------------------------------------------------------------------------------------
# Names, aliases, resolve
# --------------------------------------------------------------------------------------------------
ALIASES = {
    "mse": "mean_squared_error", "MSE": "mean_squared_error", "MeanSquaredError": "mean_squared_error",
    "mae": "mean_absolute_error", "mape": "mean_absolute_percentage_error",
    "msle": "mean_squared_logarithmic_error", "kld": "kl_divergence", "KLD": "kl_divergence",
    "KLDivergence": "kl_divergence", "kullback_leibler_divergence": "kl_divergence",
    "logcosh": "log_cosh", "LogCosh": "log_cosh", "huber_loss": "huber", "Huber": "huber",
    "cosine_proximity": "cosine_similarity", "CosineSimilarity": "cosine_similarity",
    "BinaryCrossentropy": "binary_crossentropy", "BinaryFocalCrossentropy": "binary_focal_crossentropy",
    "CategoricalCrossentropy": "categorical_crossentropy", "SparseCategoricalCrossentropy":
        "sparse_categorical_crossentropy", "CategoricalFocalCrossentropy": "categorical_focal_crossentropy",
    "CategoricalGeneralizedCrossEntropy": "categorical_generalized_cross_entropy",
    "CategoricalHinge": "categorical_hinge", "SquaredHinge": "squared_hinge", "Hinge": "hinge",
    "MeanAbsolutePercentageError": "mean_absolute_percentage_error",
    "MeanSquaredLogarithmicError": "mean_squared_logarithmic_error", "Poisson": "poisson", "Dice": "dice",
    "Tversky": "tversky", "focal_loss": "categorical_focal_crossentropy", "sce": "symmetric_crossentropy",
    "poly1": "poly_loss", "bi-tempered": "bi_tempered_logistic",
}


@pytest.mark.parametrize("alias,canonical", sorted(ALIASES.items()))
def test_aliases_resolve(alias, canonical):
    assert losses.resolve(alias)["name"] == canonical
    assert losses.resolve({"name": alias})["name"] == canonical


def test_resolve_is_explicit_json_and_round_trips():
    for name in losses.list():
        config = losses.resolve(name)
        assert json.loads(json.dumps(config)) == config
        assert config["name"] == name and config["reduction"] == "sum_over_batch_size"
        rebuilt = losses.get(config)
        assert losses.resolve(rebuilt) == config
        assert losses.REGISTRY.entry(name).summary.startswith("Use it when")
    assert losses.resolve({"name": "CategoricalFocalCrossentropy", "gamma": 3.0}) == {
        "name": "categorical_focal_crossentropy", "alpha": 0.25, "gamma": 3.0, "from_logits": False,
        "label_smoothing": 0.0, "axis": -1, "reduction": "sum_over_batch_size"}
    assert losses.resolve(losses.get("focal_loss", alpha=(0.1, 0.9)))["alpha"] == [0.1, 0.9]


def test_unknown_names_and_options():
    with pytest.raises(UnknownNameError, match=r"did you mean 'categorical_hinge'.*cnnbench list losses`"):
        losses.get("categorical_hinj")
    # Keras' `name` is accepted but display-only: not part of the resolved config (the run hash)
    named = losses.get("cce", name="my_cce")
    assert named.name == "my_cce"
    assert losses.resolve(named) == losses.resolve("cce")
    with pytest.raises(UserError, match=r"has no option 'gama'.*did you mean 'gamma'"):
        losses.get("categorical_focal_crossentropy", gama=2.0)
    with pytest.raises(UserError, match=r"option 'q' must be a number in \(0, 1\], got 0.0"):
        losses.get("gce", q=0.0)
    with pytest.raises(UserError):
        losses.get(42)
    loss = losses.get("mse")
    assert losses.get(loss) is loss


# --------------------------------------------------------------------------------------------------
# Custom losses
# --------------------------------------------------------------------------------------------------
CUSTOM_MODULE = '''
import torch
from cnnbench.losses import Loss

def scaled_mae(y_true, y_pred, scale=2.0):
    return scale * (y_true - y_pred).abs().mean(-1)

class MarginLoss(Loss):
    labels = "sparse"
    inputs = "logits"

    def __init__(self, margin=1.0, reduction="sum_over_batch_size", name="margin_loss"):
        super().__init__(reduction=reduction, name=name)
        self.margin = margin

    def call(self, y_true, y_pred):
        true = torch.gather(y_pred, -1, y_true.long().unsqueeze(-1))
        return torch.clamp(self.margin - true + y_pred, min=0).sum(-1) - self.margin

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}
'''


@pytest.fixture
def custom_module(tmp_path, monkeypatch):
    (tmp_path / "my_losses_for_cnnbench.py").write_text(textwrap.dedent(CUSTOM_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_losses_for_cnnbench"
    sys.modules.pop("my_losses_for_cnnbench", None)


def test_custom_loss_by_decorator(scratch_registry):
    @losses.register("test_double_mse", aliases=["test_dmse"], summary="Use it when testing decorators.")
    def double_mse(y_true, y_pred, factor=2.0):
        return factor * ((y_true - y_pred) ** 2).mean(-1)

    @losses.register(summary="Use it when testing Loss subclasses.")
    class TestShiftedMae(losses.Loss):
        def __init__(self, shift=0.0, reduction="sum_over_batch_size", name="test_shifted_mae"):
            super().__init__(reduction=reduction, name=name)
            self.shift = shift

        def call(self, y_true, y_pred):
            return (y_true - y_pred).abs().mean(-1) + self.shift

        def get_config(self):
            return {**super().get_config(), "shift": self.shift}

    y, p = _t("Y"), _t("P")
    mse = losses.get("mse")(y, p)
    torch.testing.assert_close(losses.get("test_dmse")(y, p), 2 * mse)
    torch.testing.assert_close(losses.get("TestDoubleMse", factor=3.0)(y, p), 3 * mse)
    assert losses.resolve("test_dmse") == {"name": "test_double_mse", "reduction": "sum_over_batch_size",
                                           "factor": 2.0}
    assert losses.resolve(losses.get("test_double_mse", factor=3.0))["factor"] == 3.0
    assert "test_double_mse" in losses.list()
    shifted = losses.get("test_shifted_mae", shift=1.0)
    torch.testing.assert_close(shifted(y, p), losses.get("mae")(y, p) + 1.0)
    assert losses.resolve(shifted) == {"name": "test_shifted_mae", "shift": 1.0, "reduction": "sum_over_batch_size"}
    train = losses.adapt("test_shifted_mae", 10)
    assert torch.isfinite(train(torch.randn(4, 10), torch.tensor([1, 2, 3, 4])))
    # a plain function works without registering
    assert float(losses.get(double_mse)(y, p)) == pytest.approx(float(2 * mse))


def test_custom_loss_by_reference(custom_module):
    ref = f"{custom_module}:scaled_mae"
    loss = losses.get({"name": ref, "scale": 3.0})
    torch.testing.assert_close(loss(_t("Y"), _t("P")), 3 * losses.get("mae")(_t("Y"), _t("P")))
    assert losses.resolve({"name": ref, "scale": 3.0}) == {"name": ref, "reduction": "sum_over_batch_size",
                                                           "scale": 3.0}
    assert losses.resolve(loss) == {"name": ref, "reduction": "sum_over_batch_size", "scale": 3.0}
    cls_ref = f"{custom_module}:MarginLoss"
    config = losses.resolve({"name": cls_ref, "margin": 0.5})
    assert config == {"name": cls_ref, "margin": 0.5, "reduction": "sum_over_batch_size"}
    assert json.loads(json.dumps(config)) == config
    margin = losses.get(config)
    assert losses.resolve(margin) == config
    train = losses.adapt(config, 10)
    outputs = torch.randn(8, 10, requires_grad=True)
    train(outputs, torch.randint(0, 10, (8,))).backward()
    assert torch.isfinite(outputs.grad).all()
    with pytest.raises(UserError, match="has no option 'scael'"):
        losses.get(ref, scael=1.0)


def test_unimportable_reference_names_module_and_attribute(custom_module):
    with pytest.raises(UserError, match=r"no_such_pkg_xyz\.losses"):
        losses.get("no_such_pkg_xyz.losses:thing")
    with pytest.raises(UserError, match=f"{custom_module}.*no attribute 'missing_loss'"):
        losses.resolve({"name": f"{custom_module}:missing_loss"})
    with pytest.raises(UserError, match="cannot record"):
        losses.resolve(losses.get(lambda y_true, y_pred: (y_true - y_pred).mean(-1)))


# --------------------------------------------------------------------------------------------------
# Class weights and label noise
# --------------------------------------------------------------------------------------------------
def test_class_weights():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    torch.testing.assert_close(losses.class_weights_to_sample_weights(labels, {0: 1.0, 2: 3.0}, 3),
                               torch.tensor([1.0, 1.0, 1.0, 1.0, 3.0, 3.0]))
    torch.testing.assert_close(losses.class_weights_to_sample_weights(labels, {"1": 5}, 3),
                               torch.tensor([1.0, 1.0, 1.0, 5.0, 1.0, 1.0]))
    balanced = losses.class_weights_to_sample_weights(labels, "balanced", 3)
    per_class = {0: 6 / (3 * 3), 1: 6 / (3 * 1), 2: 6 / (3 * 2)}  # n / (n_classes * bincount)
    torch.testing.assert_close(balanced, torch.tensor([per_class[int(c)] for c in labels]))
    sklearn_utils = pytest.importorskip("sklearn.utils")
    import numpy as np

    ref = sklearn_utils.compute_class_weight("balanced", classes=np.arange(3), y=labels.numpy())
    torch.testing.assert_close(balanced, torch.tensor(ref, dtype=torch.float32)[labels])
    torch.testing.assert_close(losses.class_weights_to_sample_weights(labels, None, 3), torch.ones(6))
    with pytest.raises(UserError, match="out of range"):
        losses.class_weights_to_sample_weights(labels, {7: 1.0}, 3)
    with pytest.raises(UserError, match="balanced"):
        losses.class_weights_to_sample_weights(labels, "balance", 3)


def test_balanced_class_weights_are_not_sklearns_to_the_last_bit():
    """"balanced" stays hand-written: scikit-learn's compute_class_weight divides in float64 (then float32
    here) while cnnbench has always computed n * (1 / (K * count)) in float32 (torch's scalar / tensor),
    which differs in the last bit for most label counts (2534 of 2571 random draws); a class absent from
    the training labels weighs 0 here, where scikit-learn refuses. Using it would change the numbers of
    every existing run trained with class_weight = "balanced"."""
    labels = torch.tensor([0] * 9 + [1] * 4 + [2] * 1)
    ours = losses.class_weights_to_sample_weights(labels, "balanced", 3)
    assert [float(ours[i]).hex() for i in (0, 9, 13)] == ["0x1.097b420000000p-1", "0x1.2aaaac0000000p+0",
                                                           "0x1.2aaaac0000000p+2"]  # what runs trained with
    sklearn_utils = pytest.importorskip("sklearn.utils")
    import numpy as np

    ref = torch.tensor(sklearn_utils.compute_class_weight("balanced", classes=np.arange(3), y=labels.numpy()),
                       dtype=torch.float32)[labels]
    assert not torch.equal(ours, ref) and torch.allclose(ours, ref, rtol=2.0**-22, atol=0.0)  # 1 ulp apart
    absent = losses.class_weights_to_sample_weights(torch.tensor([0, 0, 2]), "balanced", 3)
    torch.testing.assert_close(absent, torch.tensor([0.5, 0.5, 1.0]))  # n / (K * count) with K = 3
    with pytest.raises(ValueError):
        sklearn_utils.compute_class_weight("balanced", classes=np.arange(3), y=np.array([0, 0, 2]))


def test_label_noise():
    labels = torch.arange(10_000) % 10
    noisy = losses.add_label_noise(labels, 0.3, 10, seed=0)
    changed = noisy != labels
    assert abs(changed.float().mean().item() - 0.3) < 0.02
    assert noisy.dtype == labels.dtype and noisy.shape == labels.shape
    assert ((noisy >= 0) & (noisy < 10)).all()
    torch.testing.assert_close(losses.add_label_noise(labels, 0.3, 10, seed=0), noisy)
    assert not torch.equal(losses.add_label_noise(labels, 0.3, 10, seed=1), noisy)
    # the new class is uniform over the other nine
    offsets = (noisy[changed] - labels[changed]) % 10
    counts = torch.bincount(offsets, minlength=10).float()
    assert counts[0] == 0 and (counts[1:] / counts[1:].mean() - 1).abs().max() < 0.2
    assert torch.equal(losses.add_label_noise(labels, 0.0, 10, seed=0), labels)
    assert (losses.add_label_noise(labels, 1.0, 10, seed=0) != labels).all()
    with pytest.raises(UserError):
        losses.add_label_noise(labels, 1.5, 10, seed=0)


def test_package_never_imports_keras():
    import subprocess

    src = os.path.dirname(os.path.dirname(cnnbench.__file__))
    code = ("import sys, cnnbench.losses as L; L.adapt('bi_tempered', 3); "
            "assert 'keras' not in sys.modules, 'keras imported'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)


# --------------------------------------------------------------------------------------------------
# Docs and the built-in study
# --------------------------------------------------------------------------------------------------
def test_docs_table_lists_every_loss():
    assert not [n for n in losses.list() if n.startswith("test_")]  # the scratch registry was restored
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "losses.md")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    for name in losses.list():
        assert f"`{name}`" in text, name


def test_builtin_study_uses_only_registered_keras_losses():
    import tomllib

    path = os.path.join(os.path.dirname(cnnbench.__file__), "studies", "aparnev2020_losses.toml")
    with open(path, "rb") as f:
        study = tomllib.load(f)
    names = [losses.resolve(spec)["name"] for spec in study["grid"]["loss"]]
    assert len(names) == len(set(names)) == 20
    assert {c[0] for c in KERAS_CASES} == {losses.REGISTRY.entry(n).info["loss_class"].__name__ for n in names}
    assert study["optimizer"] == "adam"


# --------------------------------------------------------------------------------------------------
if __name__ == "__main__":  # regenerate the Keras reference table
    os.environ.setdefault("KERAS_BACKEND", "torch")
    print("KERAS_REFERENCE = {")
    for case in KERAS_CASES:
        per, weighted = keras_values(case)
        print(f"    {_case_id(case)!r}: ({[float(f'{v:.8g}') for v in per]}, {float(f'{weighted:.8g}')}),")
    print("}")
    print("KERAS_REDUCTIONS = {")
    for key, value in keras_reductions().items():
        value = [float(f"{v:.8g}") for v in value] if isinstance(value, list) else float(f"{value:.8g}")
        print(f"    {key!r}: {value},")
    print("}")
