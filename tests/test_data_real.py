"""Real-dataset loaders, on tiny files written in each dataset's own on-disk format (nothing downloaded)."""
import json
import pickle
import re

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image

import ssl_core.data.real  # noqa: F401  (registers the real datasets)
from ssl_core.data import load_dataset

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SSL_CORE_DATA", raising=False)


def rng_images(n, size, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


def save_jpeg(path, colour, size=(20, 14)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=95)


def assert_colours(data, expected_labels):
    """Solid-colour JPEGs: each image's mean colour is its label's colour, and labels are as written."""
    assert data.images.dtype == torch.uint8 and data.images.shape[1:] == (3, 32, 32)
    assert data.labels.tolist() == expected_labels
    for image, label in zip(data.images, data.labels.tolist()):
        assert (image.float().mean((1, 2)) - torch.tensor(COLOURS[label], dtype=torch.float)).abs().max() < 6


def write_cifar10(folder, seed=0, names=None):
    """CIFAR-10 pickles of two images each (all six batches unless `names`); returns {name: (rows, labels)}."""
    folder.mkdir(exist_ok=True)
    written = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        if names and name not in names:
            continue
        x = rng_images(2, 32, i + seed).reshape(2, -1)
        written[name] = (x, [(i + seed) % 10, (i + seed + 3) % 10])
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "labels": written[name][1], "batch_label": name}, f, protocol=2)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f, protocol=2)
    return written


def test_cifar10(tmp_path):
    written = write_cifar10(tmp_path / "cifar-10-batches-py")
    train = load_dataset("cifar10", "train", root=tmp_path)
    test = load_dataset("cifar10", "test", root=tmp_path)
    assert train.images.shape == (10, 3, 32, 32) and len(test) == 2 and train.class_names[3] == "class3"
    x, labels = written["data_batch_2"]
    row = x[1]                                                         # image 3 of the train split
    for c, r, col in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        assert train.images[3, c, r, col] == row[c * 1024 + r * 32 + col]
    assert train.labels[3] == labels[1]
    assert len(load_dataset("cifar10", "train", root=tmp_path, size=4, seed=1)) == 4


def test_cifar100_with_superclasses(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 4), ("test", 3)):
        with open(folder / split, "wb") as f:
            pickle.dump({"data": rng_images(n, 32, n).reshape(n, -1), "fine_labels": list(range(n)),
                         "coarse_labels": [k // 2 for k in range(n)]}, f, protocol=2)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{k}" for k in range(100)],
                     "coarse_label_names": [f"c{k}" for k in range(20)]}, f, protocol=2)
    train = load_dataset("cifar100", "train", root=tmp_path)
    assert train.num_classes == 100 and train.superclass.tolist() == [0, 0, 1, 1]
    assert torch.equal(train.images, torch.from_numpy(rng_images(4, 32, 4)))
    assert len(load_dataset("cifar100", "test", root=tmp_path)) == 3


def test_stl10_column_major_binaries_and_unlabeled(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = {s: rng_images(n, 96, k) for k, (s, n) in enumerate((("train", 3), ("test", 2), ("unlabeled", 4)))}
    for split, x in images.items():
        x.transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")     # column-major planes, as released
    np.array([1, 10, 5], dtype=np.uint8).tofile(folder / "train_y.bin")
    np.array([2, 3], dtype=np.uint8).tofile(folder / "test_y.bin")
    train = load_dataset("stl10", "train", root=tmp_path, image_size=96)
    assert torch.equal(train.images, torch.from_numpy(images["train"])) and train.labels.tolist() == [0, 9, 4]
    small = load_dataset("stl10", "test", root=tmp_path)
    assert small.images.shape == (2, 3, 32, 32) and small.labels.tolist() == [1, 2]
    pretrain = load_dataset("stl10_unlabeled", "train", root=tmp_path)
    assert len(pretrain) == 7 and pretrain.labels.tolist() == [0, 9, 4, -1, -1, -1, -1]


def test_svhn_mat(tmp_path):
    (tmp_path / "svhn").mkdir()
    x = rng_images(3, 32, 0)
    scipy.io.savemat(tmp_path / "svhn" / "train_32x32.mat",
                     {"X": x.transpose(2, 3, 1, 0), "y": np.array([[10], [1], [9]], dtype=np.uint8)})
    data = load_dataset("svhn", "train", root=tmp_path)
    assert torch.equal(data.images, torch.from_numpy(x)) and data.labels.tolist() == [0, 1, 9]


def test_cifar10c_npy(tmp_path):
    folder = tmp_path / "CIFAR-10-C"
    folder.mkdir()
    x = np.random.default_rng(0).integers(0, 256, (5 * 4, 32, 32, 3), dtype=np.uint8)   # 5 severities x 4
    np.save(folder / "fog.npy", x)
    np.save(folder / "labels.npy", np.arange(20) % 10)
    data = load_dataset("cifar10c", "test", root=tmp_path, corruption="fog", severity=3)
    assert torch.equal(data.images, torch.from_numpy(x[8:12]).permute(0, 3, 1, 2))
    assert data.labels.tolist() == [8, 9, 0, 1]
    with pytest.raises(ValueError, match="split"):
        load_dataset("cifar10c", "train", root=tmp_path, corruption="fog")
    with pytest.raises(ValueError, match="severity"):
        load_dataset("cifar10c", "test", root=tmp_path, corruption="fog", severity=6)


def test_dtd(tmp_path):
    base = tmp_path / "dtd" / "dtd"
    files = {"train": [("banded", 1), ("dotted", 1)], "val": [("banded", 2)], "test": [("dotted", 3)]}
    for split, items in files.items():
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"{split}1.txt").write_text("".join(f"{c}/{c}_{k}.jpg\n" for c, k in items))
        for c, k in items:
            save_jpeg(base / "images" / c / f"{c}_{k}.jpg", COLOURS[["banded", "dotted"].index(c)])
    assert_colours(load_dataset("dtd", "train", root=tmp_path), [0, 1, 0])
    assert_colours(load_dataset("dtd", "test", root=tmp_path), [1])


def test_flowers102(tmp_path):
    base = tmp_path / "flowers-102"
    labels = [1, 2, 3, 1, 2]
    for i, label in enumerate(labels, start=1):
        save_jpeg(base / "jpg" / f"image_{i:05d}.jpg", COLOURS[label - 1])
    scipy.io.savemat(base / "imagelabels.mat", {"labels": np.array([labels])})
    scipy.io.savemat(base / "setid.mat", {"trnid": np.array([[1, 2]]), "valid": np.array([[3]]),
                                          "tstid": np.array([[4, 5]])})
    assert_colours(load_dataset("flowers102", "train", root=tmp_path), [0, 1, 2])
    assert_colours(load_dataset("flowers102", "test", root=tmp_path), [0, 1])


def test_oxford_pets(tmp_path):
    base = tmp_path / "oxford-iiit-pet"
    (base / "annotations").mkdir(parents=True)
    rows = {"trainval": [("Abyssinian_1", 1), ("beagle_1", 2)], "test": [("beagle_2", 2)]}
    for split, items in rows.items():
        (base / "annotations" / f"{split}.txt").write_text("".join(f"{n} {k} {k} 1\n" for n, k in items))
        for n, k in items:
            save_jpeg(base / "images" / f"{n}.jpg", COLOURS[k - 1])
    train = load_dataset("oxford_pets", "train", root=tmp_path)
    assert_colours(train, [0, 1])
    assert train.class_names == ["Abyssinian", "Beagle"]


def test_fgvc_aircraft(tmp_path):
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    data.mkdir(parents=True)
    (data / "variants.txt").write_text("707-320\nA300B4\n")
    (data / "images_variant_trainval.txt").write_text("0001 707-320\n0002 A300B4\n")
    (data / "images_variant_test.txt").write_text("0003 A300B4\n")
    for name, k in (("0001", 0), ("0002", 1), ("0003", 1)):
        save_jpeg(data / "images" / f"{name}.jpg", COLOURS[k])
    assert_colours(load_dataset("fgvc_aircraft", "train", root=tmp_path), [0, 1])
    assert_colours(load_dataset("fgvc_aircraft", "test", root=tmp_path), [1])


def test_food101(tmp_path):
    base = tmp_path / "food-101"
    (base / "meta").mkdir(parents=True)
    (base / "meta" / "train.json").write_text(json.dumps({"apple_pie": ["apple_pie/1"], "sushi": ["sushi/2"]}))
    (base / "meta" / "test.json").write_text(json.dumps({"apple_pie": [], "sushi": ["sushi/3"]}))
    for path, k in (("apple_pie/1", 0), ("sushi/2", 1), ("sushi/3", 1)):
        save_jpeg(base / "images" / f"{path}.jpg", COLOURS[k])
    assert_colours(load_dataset("food101", "train", root=tmp_path), [0, 1])
    assert_colours(load_dataset("food101", "test", root=tmp_path), [1])


def test_caltech101_thirty_per_class(tmp_path):
    base = tmp_path / "caltech101" / "101_ObjectCategories"
    for colour, name, n in ((3, "BACKGROUND_Google", 2), (0, "accordion", 31), (1, "ant", 32)):
        for i in range(1, n + 1):
            save_jpeg(base / name / f"image_{i:04d}.jpg", COLOURS[colour], size=(6, 6))
    train = load_dataset("caltech101", "train", root=tmp_path)
    assert train.class_names == ["accordion", "ant"]                   # the background class is dropped
    assert_colours(train, [0] * 30 + [1] * 30)
    assert_colours(load_dataset("caltech101", "test", root=tmp_path), [0, 1, 1])


def test_image_folder_and_imagenet100(tmp_path):
    for root in (tmp_path / "crawl", tmp_path / "imagenet100"):
        for split, names in (("train", ("cat", "dog", "dog")), ("val", ("cat",))):
            for i, name in enumerate(names):
                path = root / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (40, 40), COLOURS[("cat", "dog").index(name)]).save(path)
    folder = load_dataset("imagefolder", "train", path=tmp_path / "crawl")
    assert_colours(folder, [0, 1, 1])
    assert folder.class_names == ["cat", "dog"]
    with pytest.warns(UserWarning, match="dog"):                      # val/ has no dog: labels still index train's
        assert_colours(load_dataset("imagenet100", "test", root=tmp_path), [0])


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "svhn", "dtd", "flowers102", "oxford_pets",
                                  "fgvc_aircraft", "food101", "caltech101", "imagenet100"])
def test_missing_dataset_says_where_and_how(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)) as error:
        load_dataset(name, "train", root=tmp_path)
    assert "download=True" in str(error.value) or "nothing to download" in str(error.value)


def test_data_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CORE_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        load_dataset("cifar10", "train")


# --- trust: one class list, caches that follow the files, errors that name the file -----------------
def write_tree(root, splits):
    """root/<split>/<class>/<k>.png, solid COLOURS[class index in `classes`]; splits: {split: {class: n}}."""
    classes = sorted({c for counts in splits.values() for c in counts})
    for split, counts in splits.items():
        for name, n in counts.items():
            for k in range(n):
                path = root / split / name / f"{k}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (40, 40), COLOURS[classes.index(name)]).save(path)


def test_image_folder_split_missing_a_class_keeps_train_labels(tmp_path):
    root = tmp_path / "farm"
    write_tree(root, {"train": {"ant": 1, "bee": 1, "cow": 2}, "val": {"ant": 1, "cow": 2}})
    train_ref = torchvision.datasets.ImageFolder(root / "train")
    val_ref = torchvision.datasets.ImageFolder(root / "val")      # alone, it calls cow class 1 (bee's label)
    expected = [train_ref.class_to_idx[val_ref.classes[k]] for k in val_ref.targets]
    assert expected == [0, 2, 2] and val_ref.targets == [0, 1, 1]
    with pytest.warns(UserWarning, match=re.escape(f"{root / 'val'} has no images of the training classes ['bee']")):
        val = load_dataset("imagefolder", "test", path=root)
    assert val.class_names == train_ref.classes and val.meta["missing_classes"] == ["bee"]
    assert_colours(val, expected)
    train = load_dataset("imagefolder", "train", path=root)
    assert_colours(train, train_ref.targets)
    assert train.meta["missing_classes"] == []


def test_image_folder_split_with_an_extra_class_fails(tmp_path):
    root = tmp_path / "farm"
    write_tree(root, {"train": {"ant": 1, "bee": 1}, "val": {"ant": 1, "dog": 1}})
    with pytest.raises(ValueError, match=re.escape(f"{root / 'val'} has class folders ['dog'] that the training "
                                                   f"split {root / 'train'} lacks")):
        load_dataset("imagefolder", "test", path=root)


def test_image_folder_cache_follows_added_edited_and_removed_files(tmp_path):
    root = tmp_path / "farm"
    write_tree(root, {"train": {"ant": 3, "bee": 3}})
    assert len(load_dataset("imagefolder", "train", path=root)) == 6
    Image.new("RGB", (40, 40), COLOURS[1]).save(root / "train" / "bee" / "3.png")          # added
    reference = torchvision.datasets.ImageFolder(root / "train")
    data = load_dataset("imagefolder", "train", path=root)
    assert len(data) == len(reference) == 7
    assert_colours(data, reference.targets)
    Image.new("RGB", (40, 40), COLOURS[3]).save(root / "train" / "ant" / "0.png")          # edited
    first = load_dataset("imagefolder", "train", path=root).images[0].float().mean((1, 2))
    assert (first - torch.tensor(COLOURS[3], dtype=torch.float)).abs().max() < 6
    (root / "train" / "bee" / "0.png").unlink()                                            # removed
    reference = torchvision.datasets.ImageFolder(root / "train")
    assert len(load_dataset("imagefolder", "train", path=root)) == len(reference) == 6


def test_image_folder_corrupted_file_names_it(tmp_path):
    root = tmp_path / "farm"
    write_tree(root, {"train": {"ant": 2, "bee": 1}})
    path = root / "train" / "ant" / "1.png"
    path.write_bytes(path.read_bytes()[:60])                                               # truncated PNG
    with pytest.raises(OSError):                                                          # torchvision cannot read it
        torchvision.datasets.ImageFolder(root / "train")[1]
    with pytest.raises(ValueError, match=re.escape(f"cannot decode {path} as an image: ")):
        load_dataset("imagefolder", "train", path=root)


def test_cifar10_matches_torchvision_and_follows_changed_files(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)   # accept small files
    folder = tmp_path / "cifar-10-batches-py"

    def same_as_torchvision(split):
        ours = load_dataset("cifar10", split, root=tmp_path)
        ref = torchvision.datasets.CIFAR10(tmp_path, train=split == "train")
        assert torch.equal(ours.images, torch.from_numpy(ref.data).permute(0, 3, 1, 2))
        assert ours.labels.tolist() == ref.targets and ours.class_names == ref.classes

    write_cifar10(folder)
    same_as_torchvision("train")
    write_cifar10(folder, seed=7, names=["data_batch_2"])                                 # changed after a load
    same_as_torchvision("train")
    same_as_torchvision("test")
    path = folder / "data_batch_1"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=re.escape(f"truncated or corrupt CIFAR file {path}: expected a pickled")):
        load_dataset("cifar10", "train", root=tmp_path)


def test_stl10_unlabeled_cache_follows_changed_binaries(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng_images(2, 96, 0).tofile(folder / "train_X.bin")
    np.array([1, 2], dtype=np.uint8).tofile(folder / "train_y.bin")
    rng_images(3, 96, 1).tofile(folder / "unlabeled_X.bin")
    assert len(load_dataset("stl10_unlabeled", "train", root=tmp_path)) == 5
    x = rng_images(4, 96, 2)
    x.tofile(folder / "unlabeled_X.bin")
    data = load_dataset("stl10_unlabeled", "train", root=tmp_path, image_size=96)
    assert len(data) == 6 and torch.equal(data.images[2:], torch.from_numpy(x).transpose(2, 3))
    path = folder / "unlabeled_X.bin"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=re.escape(f"truncated STL-10 file {path}: 1000 bytes")):
        load_dataset("stl10_unlabeled", "train", root=tmp_path)
