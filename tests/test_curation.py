"""The negatives' relevance measurements against direct counts and a known geometry."""
import pandas as pd
import pytest
import torch
from torch import nn

from ssl_core.curation import draw_batches, negative_relevance, negative_similarities


def test_relevance_matches_a_loop_count():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (50,), generator=g)
    superclass = labels // 3
    batches = draw_batches(50, 8, 5, seed=1)
    df = negative_relevance(labels, superclass, batches)
    expected = []
    for b in batches:
        for i in b.tolist():
            others = [k for k in b.tolist() if k != i]
            expected.append((sum(int(superclass[k] == superclass[i]) for k in others) / 7,
                             sum(int(labels[k] == labels[i]) for k in others) / 7))
    assert len(df) == 40
    assert df.same_superclass.tolist() == pytest.approx([e[0] for e in expected])
    assert df.same_class.tolist() == pytest.approx([e[1] for e in expected])


def test_batches_within_groups_stay_in_one_group_and_skip_small_ones():
    groups = torch.tensor([0] * 30 + [1] * 20 + [2] * 3)
    batches = draw_batches(len(groups), 10, 40, seed=0, groups=groups)
    for b in batches:
        assert len(b) == 10 and len(set(b.tolist())) == 10
        assert len(set(groups[b].tolist())) == 1 and groups[b][0] != 2
    picked = torch.tensor([groups[b][0].item() for b in batches])
    assert 0 < (picked == 1).sum() < (picked == 0).sum()     # proportional to size: 30 vs 20
    # within one superclass per group, every negative shares the anchor's superclass
    df = negative_relevance(torch.arange(len(groups)), groups, batches)
    assert (df.same_superclass == 1).all() and (df.same_class == 0).all()


def test_bad_batch_size_is_named():
    with pytest.raises(ValueError, match="batch_size"):
        draw_batches(5, 8, 1)
    with pytest.raises(ValueError, match="batch_size"):
        draw_batches(6, 4, 1, groups=torch.tensor([0, 0, 0, 1, 1, 1]))


class Colour(nn.Module):
    """'Projection' = mean colour of the image: a geometry we know."""
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.scale * x.mean((2, 3))


def test_similarities_are_cosines_of_projections():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    images[0, 0] = images[1, 0] = 255          # two red images, two green ones
    images[2, 1] = images[3, 1] = 255
    df = negative_similarities(Colour(), images, [torch.arange(4)], per_anchor=3)
    from ssl_core.data.views import normalize
    z = torch.nn.functional.normalize(normalize(images).mean((2, 3)), dim=1)
    expected = [(z[i] @ z[k]).item() for i in range(4) for k in range(4) if k != i]
    assert isinstance(df, pd.DataFrame) and df.similarity.tolist() == pytest.approx(expected, abs=1e-5)
