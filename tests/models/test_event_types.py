"""Event types as inputs of the sequence models (SASRec, BERT4Rec, HSTU); the scoring fast
path of HSTU; few batch shapes in training (memory)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.numpy import load_file

from recpilot.config import BERT4RecConfig, EvaluationConfig, HSTUConfig, SASRecConfig
from recpilot.data.interactions import Interactions
from recpilot.data.split import leave_one_out
from recpilot.evaluation import Evaluator
from recpilot.models.base import Query
from recpilot.models.nn.bert4rec import BERT4Rec, BERT4RecModuleConfig
from recpilot.models.nn.hstu import HSTU, HSTUModuleConfig
from recpilot.models.nn.losses import FullSoftmaxLoss, chunked_softmax_cross_entropy
from recpilot.models.nn.sasrec import SASRec, SASRecModuleConfig
from recpilot.models.sequential import (
    EVENT_TYPES,
    BERT4RecRecommender,
    HSTURecommender,
    SASRecRecommender,
    event_type_codes,
    learn_event_types,
    sequence_loss,
)
from recpilot.training.batching import SequenceBatcher
from tests.models import test_sequential as seq

TRAINING = {
    "max_epochs": 40,
    "batch_size": 16,
    "learning_rate": 1e-2,
    "weight_decay": 0.0,
    "patience": 40,
}


def typed_data(n_users: int = 200, n_items: int = 50, seed: int = 0) -> Interactions:
    """After a ``cart`` of item ``i`` the next item is ``i + 1``, after a ``view`` ``i + 2``.

    Types are drawn at random (half each), so the last item alone leaves a coin flip between
    two successors: only a model that reads the last event's type can predict the next item.
    Users make 6 to 15 steps (at most 30 items on), so no item repeats within a history.
    """
    rng = np.random.default_rng(seed)
    users: list[int] = []
    items: list[int] = []
    types: list[str] = []
    for u in range(n_users):
        item = int(rng.integers(n_items))
        for _ in range(int(rng.integers(6, 16))):
            kind = "cart" if rng.random() < 0.5 else "view"
            users.append(u)
            items.append(item)
            types.append(kind)
            item = (item + (1 if kind == "cart" else 2)) % n_items
    frame = pl.DataFrame(
        {
            "user_id": np.asarray(users, dtype=np.int64),
            "item_id": np.asarray(items, dtype=np.int64),
            "timestamp": np.arange(len(users), dtype=np.int64),
            "event_type": types,
        }
    )
    return Interactions.from_frame(frame)


def make(kind: str, **changes: object) -> SASRecRecommender:
    options = {**seq.TINY, "d_model": 32, "training": TRAINING, **changes}
    if kind == "sasrec":
        return SASRecRecommender(SASRecConfig.model_validate(options))
    if kind == "bert4rec":
        return BERT4RecRecommender(BERT4RecConfig.model_validate(options))
    return HSTURecommender(HSTUConfig.model_validate(options))


@pytest.fixture(scope="module")
def split():  # type: ignore[no-untyped-def]
    return leave_one_out(typed_data())


@pytest.fixture(scope="module")
def typed_sasrec(split) -> SASRecRecommender:  # type: ignore[no-untyped-def]
    return make("sasrec").fit(split.train, split.validation)


def hr1(model: SASRecRecommender, eval_set) -> float:  # type: ignore[no-untyped-def]
    evaluator = Evaluator(EvaluationConfig(ks=[1, 10]), show_progress=False)
    return float(evaluator.evaluate(model, eval_set).metrics["HR@1"])


# -- the wrapper ----------------------------------------------------------------------------------
def test_types_are_learned_from_the_training_data(typed_sasrec: SASRecRecommender) -> None:
    assert typed_sasrec.event_types_ == ("cart", "view")
    assert typed_sasrec.n_event_types == 2
    assert learn_event_types(typed_data(), False) is None
    assert learn_event_types(seq.cycle_data()[0], None) is None  # one type: auto is off
    assert learn_event_types(seq.cycle_data()[0], True) == ("view",)


def test_a_model_with_event_types_learns_what_one_without_cannot(
    split,  # type: ignore[no-untyped-def]
    typed_sasrec: SASRecRecommender,
) -> None:
    """The successor depends on the last event's type: with types HR@1 is near 1, without
    them the model can only pick one of the two successors (about half)."""
    assert split.test.history_event_types is not None
    assert hr1(typed_sasrec, split.test) >= 0.9
    blind = make("sasrec", event_types=False).fit(split.train, split.validation)
    assert blind.event_types_ is None
    assert hr1(blind, split.test) <= 0.65


def test_hstu_learns_from_event_types(split) -> None:  # type: ignore[no-untyped-def]
    model = make("hstu").fit(split.train, split.validation)
    assert model.n_event_types == 2
    assert hr1(model, split.test) >= 0.85


def test_bert4rec_reads_event_types(split, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """BERT4Rec trains with the types and reads them when scoring; save→load keeps them.

    (Its masked-item training hardly learns this task's dependency on the type: a masked
    slot usually sees its right-hand neighbour too, so only the few masks at a row's end teach
    the left-context-only situation of scoring. No accuracy threshold here.)
    """
    model = make("bert4rec", training={**TRAINING, "max_epochs": 3}).fit(split.train)
    assert model.n_event_types == 2
    cart = Query.from_histories([[3, 4, 6]], event_types=[["view", "cart", "cart"]])
    view = Query.from_histories([[3, 4, 6]], event_types=[["view", "cart", "view"]])
    assert not np.array_equal(model.score(cart), model.score(view))
    loaded = BERT4RecRecommender.load(model.save(tmp_path / "bert4rec"))
    np.testing.assert_array_equal(loaded.score(cart), model.score(cart))


def test_save_load_keeps_the_types_and_the_scores(
    split,  # type: ignore[no-untyped-def]
    typed_sasrec: SASRecRecommender,
    tmp_path: Path,
) -> None:
    path = typed_sasrec.save(tmp_path / "model")
    weights = load_file(str(path / "weights.safetensors"))
    assert json.loads(weights[EVENT_TYPES].tobytes().decode()) == ["cart", "view"]
    loaded = SASRecRecommender.load(path)
    assert isinstance(loaded, SASRecRecommender) and loaded.event_types_ == ("cart", "view")
    test = split.test
    query = Query(test.users, test.histories, test.history_times, test.history_event_types)
    np.testing.assert_array_equal(loaded.score(query), typed_sasrec.score(query))


def test_artefacts_without_event_types_still_load(split, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A model without types writes no vocabulary entry (the format of older artefacts)."""
    model = make("sasrec", event_types=False, training={**TRAINING, "max_epochs": 1})
    model.fit(split.train)
    path = model.save(tmp_path / "old")
    assert EVENT_TYPES not in load_file(str(path / "weights.safetensors"))
    loaded = SASRecRecommender.load(path)
    assert isinstance(loaded, SASRecRecommender) and loaded.event_types_ is None
    q = Query.from_histories([[1, 2, 3]], event_types=[["cart", "view", "cart"]])
    np.testing.assert_array_equal(loaded.score(q), model.score(q))
    # a model trained without types ignores them
    np.testing.assert_array_equal(model.score(q), model.score(Query.from_histories([[1, 2, 3]])))


def test_unknown_types_at_query_time(typed_sasrec: SASRecRecommender) -> None:
    history = [[3, 4, 6]]
    unknown = typed_sasrec.score(
        Query.from_histories(history, event_types=[["teleport", "wish", "x"]])
    )
    missing = typed_sasrec.score(Query.from_histories(history))
    assert np.isfinite(unknown).all()
    # an unseen name and a query without types both read the "unknown" type
    np.testing.assert_array_equal(unknown, missing)
    cart = typed_sasrec.score(Query.from_histories(history, event_types=[["view", "cart", "cart"]]))
    view = typed_sasrec.score(Query.from_histories(history, event_types=[["view", "cart", "view"]]))
    assert int(np.argmax(cart)) == 7 and int(np.argmax(view)) == 8  # item index = item id here
    # unknown history items are dropped together with their types; empty rows get the prior
    mixed = Query.from_histories([[999, 6], []], event_types=[["cart", "cart"], []])
    scores = typed_sasrec.score(mixed)
    assert int(np.argmax(scores[0])) == 7
    assert typed_sasrec.prior_ is not None
    np.testing.assert_array_equal(scores[1], typed_sasrec.prior_)


def test_query_validates_event_types() -> None:
    with pytest.raises(ValueError, match="event_types"):
        Query(np.array([0]), (np.array([1, 2]),), event_types=(np.array(["view"]),))
    q = Query.from_histories([[1, 2]], event_types=[["view", "cart"]])
    assert q.event_types is not None and list(q.event_types[0]) == ["view", "cart"]


def test_event_type_codes() -> None:
    codes = event_type_codes(("cart", "view"), [np.array(["view", "cart", "buy"]), np.array([])])
    assert [c.tolist() for c in codes] == [[2, 1, -1], []]


def test_batches_carry_aligned_event_types() -> None:
    data = typed_data(n_users=5)
    codes = data.event_type + 1
    batcher = SequenceBatcher(data, max_len=50, batch_size=5, event_types=codes)
    batch = batcher.batch(np.arange(5))
    assert batch.event_types is not None and batch.target_event_types is not None
    ptr = data.user_ptr
    for row in range(5):
        n = int(batch.lengths[row])
        user_codes = codes[ptr[row] : ptr[row + 1]]
        assert batch.event_types[row, :n].tolist() == user_codes[:-1].tolist()
        assert batch.target_event_types[row, :n].tolist() == user_codes[1:].tolist()
        assert (batch.event_types[row, n:] == 0).all()


# -- the modules ----------------------------------------------------------------------------------
def _modules() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [
        SASRec(SASRecModuleConfig(30, max_len=8, d_model=16, dropout=0.0, n_event_types=3)),
        HSTU(HSTUModuleConfig(30, max_len=8, d_model=16, dropout=0.0, n_event_types=3)),
    ]


@pytest.mark.parametrize("index", [0, 1], ids=["sasrec", "hstu"])
def test_causal_models_stay_causal_with_event_types(index: int) -> None:
    """Changing a later event's type (or item) leaves every earlier output unchanged."""
    model = _modules()[index].eval()
    tokens = torch.tensor([[3, 7, 9, 2, 11, 5]])
    types = torch.tensor([[1, 2, 3, 1, 2, 3]])
    lengths = torch.tensor([6])
    changed = types.clone()
    changed[0, 4] = 1
    a, b = model(tokens, lengths, types=types), model(tokens, lengths, types=changed)
    torch.testing.assert_close(a[:, :4], b[:, :4])
    assert not torch.allclose(a[:, 4:], b[:, 4:])


def test_models_without_types_are_unchanged_by_the_option() -> None:
    """A module without event types draws the same initial weights as before the option."""
    torch.manual_seed(0)
    plain = SASRec(SASRecModuleConfig(30, max_len=8, d_model=16))
    torch.manual_seed(0)
    typed = SASRec(SASRecModuleConfig(30, max_len=8, d_model=16, n_event_types=2))
    assert plain.types is None and typed.types is not None
    own = typed.state_dict()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(own[name], value)


def test_bert4rec_hides_the_type_of_masked_slots() -> None:
    torch.manual_seed(0)
    config = BERT4RecModuleConfig(30, max_len=8, d_model=16, dropout=0.0, n_event_types=2)
    model = BERT4Rec(config).eval()
    tokens = torch.tensor([[3, 7, model.mask_token, 2]])
    lengths = torch.tensor([4])
    a = model.embed(tokens, lengths, torch.tensor([[1, 2, 1, 2]]))
    b = model.embed(tokens, lengths, torch.tensor([[1, 2, 2, 2]]))
    torch.testing.assert_close(a, b)  # the masked slot's type is not read
    last = model.last_hidden(tokens[:, :2], torch.tensor([2]), torch.tensor([[1, 2]]))
    assert last.shape == (1, 16)


# -- HSTU scoring fast path (validation cost) -----------------------------------------------------
@pytest.mark.parametrize(
    ("time_buckets", "position_bias", "heads"), [(0, True, 2), (8, True, 1), (8, False, 2)]
)
def test_hstu_last_hidden_fast_path_equals_the_full_pass(
    time_buckets: int, position_bias: bool, heads: int
) -> None:
    """The last block computes only the last position; the result is the full pass's."""
    torch.manual_seed(0)
    config = HSTUModuleConfig(
        50,
        max_len=12,
        d_model=16,
        n_layers=3,
        n_heads=heads,
        dropout=0.0,
        time_buckets=time_buckets,
        position_bias=position_bias,
        n_event_types=2,
    )
    model = HSTU(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(std=0.3)  # non-zero biases too
    lengths = torch.tensor([10, 3, 7, 1])
    tokens = torch.randint(1, 51, (4, 10))
    tokens[torch.arange(10)[None, :] >= lengths[:, None]] = 0
    stamps = torch.cumsum(torch.randint(0, 1000, (4, 10)), dim=1)
    types = torch.randint(0, 3, (4, 10))
    rows = torch.arange(4)
    full = model(tokens, lengths, stamps, types)[rows, lengths - 1]  # with autograd
    with torch.inference_mode():  # the in-place attention of inference
        fast = model.last_hidden(tokens, lengths, stamps, types)
        full_inference = model(tokens, lengths, stamps, types)[rows, lengths - 1]
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(full_inference, full, rtol=1e-6, atol=1e-6)


# -- few batch shapes (training memory) -----------------------------------------------------------
def test_batch_widths_are_rounded_to_pad_multiple() -> None:
    """Widths come in multiples of ``pad_multiple`` (capped at max_len); the extra slots are
    padding, and a causal model's loss is the same as on the unrounded batch."""
    data = typed_data(n_users=40)
    plain = SequenceBatcher(data, max_len=12, batch_size=8, event_types=data.event_type + 1)
    rounded = SequenceBatcher(
        data, max_len=12, batch_size=8, event_types=data.event_type + 1, pad_multiple=5
    )
    torch.manual_seed(0)
    module = SASRec(SASRecModuleConfig(data.n_items, max_len=12, d_model=16, dropout=0.0))
    loss = FullSoftmaxLoss()
    for rows in plain.order(np.random.default_rng(0)):
        a, b = plain.batch(rows), rounded.batch(rows)
        width = int(a.lengths.max())
        assert b.tokens.shape[1] == min(12, -(-width // 5) * 5)
        assert (b.tokens[:, width:] == 0).all() and (b.targets[:, width:] == -1).all()
        assert b.event_types is not None and (b.event_types[:, width:] == 0).all()
        torch.testing.assert_close(
            sequence_loss(module, loss, a), sequence_loss(module, loss, b), rtol=1e-5, atol=1e-6
        )
    # a max_len not above pad_multiple has few widths anyway: batches keep their own width
    short = SequenceBatcher(data, max_len=12, batch_size=8, pad_multiple=32)
    for rows in plain.order(np.random.default_rng(0)):
        assert short.batch(rows).tokens.shape == plain.batch(rows).tokens.shape


def test_bf16_chunks_of_any_length_give_the_fp32_loss() -> None:
    """The bf16 head pads each chunk to a multiple of BF16_ROWS rows: same loss and gradients
    (up to bf16 rounding) as fp32, whatever the number of rows."""
    torch.manual_seed(0)
    for n in (1, 127, 129, 300):
        hidden = torch.randn(n, 16, requires_grad=True)
        weight = torch.randn(40, 16, requires_grad=True)
        targets = torch.randint(0, 40, (n,))
        grads = []
        values = []
        for bf16 in (False, True):
            out = chunked_softmax_cross_entropy(hidden, weight, targets, 256, bf16)
            values.append(out.detach())
            grads.append(torch.autograd.grad(out, (hidden, weight)))
        torch.testing.assert_close(values[1], values[0], rtol=2e-2, atol=2e-2)
        for g16, g32 in zip(grads[1], grads[0], strict=True):
            torch.testing.assert_close(g16, g32, rtol=5e-2, atol=5e-3)
