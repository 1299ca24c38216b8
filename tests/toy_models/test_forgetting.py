"""Forgetting measures (toy_models/forgetting.py): exactly zero on an unchanged model; destroying one task's cue
drops that task and no other; the held-out corpus slice continues the pretraining stream; a run fine-tuned
hard on one task forgets the others (slow)."""

import dataclasses

import numpy as np
import pytest

from toy_models.forgetting import corpus_cross_entropy, forgetting_between, heldout_corpus, run_forgetting
from toy_models.pretrain import CorpusConfig, build_corpus, pretrain
from toy_models.tasks import encode
from toy_models.transformer import flat_params, unflatten_params
from verify.profiles import get_profile

CFG = get_profile("tiny").base
FAST = dict(n_problems=64, n_corpus=256)


@pytest.fixture(scope="module")
def base(session_runs):
    return pretrain(CFG)


def test_an_unchanged_model_forgets_exactly_nothing(base):
    out = forgetting_between(CFG, base.graphdef, base.params, base.params, ("add",), **FAST)
    assert out["other_tasks"] == ["mod", "sort", "rev"]
    assert all(v == 0.0 for v in out["pass_change"].values())
    assert out["forgetting"] == 0.0 and out["trained_gain"] == 0.0 and out["ce_change"] == 0.0
    assert 0 < out["ce_base"] < 10 and any(r > 0 for r in out["pass_base"].values())
    again = forgetting_between(CFG, base.graphdef, base.params, base.params, ("add",), **FAST)
    assert again == out  # deterministic


def test_destroying_one_tasks_cue_drops_that_task_and_no_other(base):
    """The tokens 'r' and 'a'..'j' occur only in rev sequences ('r:abc=cba'): overwriting their input
    embeddings with random vectors destroys rev's behaviour and leaves every other task's computation bit
    for bit unchanged."""
    flat = flat_params(base.params)
    rev_only = encode("rabcdefghij")
    emb = flat["embed.embedding"].copy()
    emb[rev_only] = np.random.default_rng(0).standard_normal((len(rev_only), emb.shape[1])).astype(np.float32)
    broken = unflatten_params(base.params, {**flat, "embed.embedding": emb})
    out = forgetting_between(CFG, base.graphdef, base.params, broken, ("add", "mod", "sort"), **FAST)
    assert out["pass_base"]["rev"] >= 0.3
    assert out["pass_change"]["rev"] <= -0.25
    assert out["pass_change"]["add"] == out["pass_change"]["mod"] == out["pass_change"]["sort"] == 0.0
    assert out["forgetting"] == pytest.approx(-out["pass_change"]["rev"]) and out["trained_gain"] == 0.0
    assert out["ce_change"] > 0.05


def test_the_heldout_corpus_slice_follows_the_pretraining_corpus_in_its_stream():
    corpus = CorpusConfig(size=1, n_examples=40)
    tokens, mask = heldout_corpus(corpus, 3, 10)
    longer, longer_mask = build_corpus(dataclasses.replace(corpus, n_examples=50), 3)
    trained, _ = build_corpus(corpus, 3)
    np.testing.assert_array_equal(longer[:40], trained)  # the stream's head is the pretraining corpus
    np.testing.assert_array_equal(tokens, longer[40:])
    np.testing.assert_array_equal(mask, longer_mask[40:])


def test_cross_entropy_does_not_depend_on_the_chunking(base, monkeypatch):
    import toy_models.forgetting as F

    whole = corpus_cross_entropy(base.graphdef, base.params, CFG, 300)
    monkeypatch.setattr(F, "CE_CHUNK", 128)  # 300 = 128 + 128 + 44 padded rows that count for nothing
    assert corpus_cross_entropy(base.graphdef, base.params, CFG, 300) == pytest.approx(whole, rel=1e-5)


@pytest.mark.slow  # trains a run: SFT on add alone at a large rate
def test_fine_tuning_hard_on_one_task_forgets_the_others(session_runs):
    from toy_models.finetune import finetune

    p = get_profile("tiny")
    spec = p.spec("sft", 0, lr=1e-2, steps=60, matched=False, tasks=("add",))
    res = finetune(spec)
    out = run_forgetting(res, **FAST)
    assert out["trained_tasks"] == ["add"] and out["other_tasks"] == ["mod", "sort", "rev"]
    assert out["forgetting"] > 0.1
    assert out["ce_change"] > 0.1
    same = run_forgetting(res, "base", **FAST)  # the base snapshot against itself
    assert same["forgetting"] == 0.0 and same["ce_change"] == 0.0
