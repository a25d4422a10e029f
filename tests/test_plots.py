"""The figure layout check: texts that collide are found, a clean figure passes, and save_figure warns."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest

from ssl_core.plots import overlapping_text, save_figure, set_style


def crowded_ticks():
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2], [1, 2])
    ax.set_xticks([1.0, 1.01, 1.02], ["1000000", "2000000", "3000000"])
    return fig


def test_colliding_tick_labels_and_titles_are_found():
    fig = crowded_ticks()
    assert ("1000000", "2000000") in overlapping_text(fig)
    fig, axes = plt.subplots(1, 2, figsize=(4, 2))
    axes[0].set_title("a panel title long enough to run into its neighbour")
    axes[1].set_title("the neighbour's title")
    assert overlapping_text(fig) == [("a panel title long enough to run into its neighbour", "the neighbour's title")]


def test_a_clean_figure_has_no_overlap():
    set_style()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax in axes:
        ax.plot([4, 8, 16, 32, 64, 128], range(6), label="simclr")
        ax.set(xscale="log", xticks=[4, 16, 64], xticklabels=["4", "16", "64"], title="linear probe", xlabel="epochs")
        ax.legend()
    fig.suptitle("pretrained on curated, 5 seeds", y=1.02)
    assert overlapping_text(fig) == []


def test_save_figure_warns_naming_the_colliding_texts(tmp_path):
    with pytest.warns(UserWarning, match="crowded: overlapping text: '1000000' / '2000000'"):
        save_figure(crowded_ticks(), "crowded", tmp_path)
    assert (tmp_path / "crowded.png").exists() and (tmp_path / "crowded.pdf").exists()


def test_slanted_labels_collide_only_when_their_glyphs_do():
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(range(2), [1, 2])
    ax.set_xticks(range(2), ["shape_variants", "orientation"], rotation=30, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.5, 3.5)                                          # labels about 50 pixels apart
    a, b = ax.get_xticklabels()
    assert a.get_window_extent().overlaps(b.get_window_extent())   # their upright boxes overlap,
    assert overlapping_text(fig) == []                              # the slanted texts do not
    ax.set_xlim(-0.5, 20)                                           # about 10 pixels apart
    assert overlapping_text(fig) == [("shape_variants", "orientation")]
