"""`HybridItemEmbedding`: ID + projected text, unknown-ID vector, ID-dropout, growth."""

from __future__ import annotations

import pytest
import torch

from recpilot.models.nn.embeddings import HybridItemEmbedding


def make(id_dropout: float = 0.0) -> HybridItemEmbedding:
    torch.manual_seed(0)
    text = torch.randn(5, 6)
    has_id = torch.tensor([True, True, True, False, False])
    emb = HybridItemEmbedding(5, 4, text, has_id, id_dropout=id_dropout)
    with torch.no_grad():
        emb.unknown_id.copy_(torch.randn(4))
    return emb.eval()


def test_vectors_combine_id_or_unknown_with_text() -> None:
    emb = make()
    v = emb.vectors()  # (6, 4)
    assert not v[0].any()  # padding
    proj = emb.text_proj(emb.text)
    torch.testing.assert_close(v[1:4], emb.table.weight[1:4] + proj[1:4])
    torch.testing.assert_close(v[4:], emb.unknown_id + proj[4:])  # no ID: unknown + text
    out = emb(torch.tensor([[1, 4, 0]]))
    torch.testing.assert_close(out[0, 1], v[4] * emb.factor)
    assert not out[0, 2].any()
    torch.testing.assert_close(emb.item_weight, v[1:])


def test_id_dropout_hides_ids_only_in_training() -> None:
    emb = make(id_dropout=0.9)
    assert torch.equal(emb.vectors(), emb.vectors())  # eval: deterministic
    emb.train()
    torch.manual_seed(1)
    hidden = emb.vectors()
    proj = emb.text_proj(emb.text)
    dropped = [i for i in range(1, 4) if torch.allclose(hidden[i], emb.unknown_id + proj[i])]
    assert dropped  # with p = 0.9 some of the three IDs are hidden


def test_add_items_and_set_text() -> None:
    emb = make()
    before = emb.vectors().detach().clone()
    emb.add_items(torch.ones(2, 6))
    after = emb.vectors().detach()
    assert emb.n_items == 7 and after.shape == (8, 4)
    torch.testing.assert_close(after[:6], before)
    torch.testing.assert_close(
        after[6], emb.unknown_id.detach() + emb.text_proj(torch.ones(6)).detach()
    )
    emb.set_text(torch.tensor([6]), torch.zeros(1, 6))
    torch.testing.assert_close(emb.vectors().detach()[7], emb.unknown_id.detach())


def test_bad_shapes_are_named() -> None:
    with pytest.raises(ValueError, match="need 5 rows"):
        HybridItemEmbedding(5, 4, torch.zeros(4, 6), torch.zeros(5, dtype=torch.bool))
    with pytest.raises(ValueError, match="id_dropout"):
        HybridItemEmbedding(5, 4, torch.zeros(5, 6), torch.zeros(5, dtype=torch.bool), 1.0)
