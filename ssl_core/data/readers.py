"""Readers of the real datasets' files: array formats read directly, folders of images through torchvision.

Array formats (CIFAR-10/100 pickles, STL-10 binaries, SVHN .mat, CIFAR-10-C .npy) and Flowers102's
.mat labels are read here directly: torchvision's classes refuse any file whose md5 differs from the
official release, which would forbid testing on small files in the same format, and reading the
arrays at once is faster than one PIL image at a time. Folder-of-JPEG sets go through torchvision's
classes (resized so the short side is `image_size`, then centre-cropped) and are cached as uint8,
keyed on their files' paths, sizes and modification times so that any change to the files is picked up.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from ssl_core.data import ImageSet
from ssl_core.data.world import cached

CIFAR10C = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
            "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
            "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where real datasets live: `root`, else $SSL_CORE_DATA, else ~/data."""
    return Path(root or os.environ.get("SSL_CORE_DATA") or Path.home() / "data").expanduser()


def missing(name: str, where: Path, layout: str,
            fetch: str = "pass download=True to fetch it with torchvision") -> FileNotFoundError:
    """The error for a dataset that is not where it belongs: the place, the layout, how to get it."""
    return FileNotFoundError(f"dataset {name!r} not found: expected {where} ({layout}). Put it there, "
                             f"point root= or $SSL_CORE_DATA at its parent folder, or {fetch}.")


def fingerprint(*paths: Path, extra: str = "") -> str:
    """A short hash of `extra` and of every file at `paths` (folders walked, links followed): path, size, mtime."""
    digest = hashlib.sha256(extra.encode())
    for path in paths:
        path = Path(path).resolve()
        walk = os.walk(path, followlinks=True) if path.is_dir() else [(str(path.parent), [], [path.name])]
        for folder, dirs, files in walk:
            dirs.sort()                                                # walk in a fixed order
            for name in sorted(files):
                stat = os.stat(os.path.join(folder, name))
                digest.update(f"{folder}/{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


# --- array formats ---------------------------------------------------------------------------------
def _unpickle(path: Path) -> dict:
    """A pickled CIFAR file; a truncated or foreign one raises ValueError naming it."""
    with open(path, "rb") as f:
        try:
            return pickle.load(f, encoding="latin1")
        except Exception as error:
            raise ValueError(f"truncated or corrupt CIFAR file {path}: expected a pickled dict ({error!r})") from error


def _cifar_images(path: Path, batch: dict, labels: str) -> np.ndarray:
    """The images of CIFAR batch `batch` read from `path`, 3,072 bytes per label. Shape: (N, 3, 32, 32) uint8."""
    x = np.asarray(batch["data"], dtype=np.uint8)
    if x.size != 3072 * len(batch[labels]):
        raise ValueError(f"truncated CIFAR batch {path}: {x.size} image bytes for {len(batch[labels])} labels, "
                         f"expected 3072 (3x32x32) per label")
    return x.reshape(-1, 3, 32, 32)


def cifar(root, split: str, hundred: bool = False, download: bool = False) -> ImageSet:
    """CIFAR-10 (cifar-10-batches-py/) or CIFAR-100 (cifar-100-python/, with coarse superclasses)."""
    import torchvision

    name = "cifar100" if hundred else "cifar10"
    folder = data_root(root) / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    if not folder.exists():
        if not download:
            raise missing(name, folder, "the python version: pickled batches")
        fetch = torchvision.datasets.CIFAR100 if hundred else torchvision.datasets.CIFAR10
        fetch(str(data_root(root)), download=True)
    if hundred:
        files, key = [split], "fine_labels"
        meta = _unpickle(folder / "meta")
        names, extra = meta["fine_label_names"], dict(superclass_names=meta["coarse_label_names"])
    else:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        key, names, extra = "labels", _unpickle(folder / "batches.meta")["label_names"], {}
    batches = {f: _unpickle(folder / f) for f in files}             # read on every call: nothing to go stale
    x = np.concatenate([_cifar_images(folder / f, b, key) for f, b in batches.items()])
    labels = [y for b in batches.values() for y in b[key]]
    coarse = torch.tensor(batches[split]["coarse_labels"]) if hundred else None
    return ImageSet(torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64), list(names),
                    superclass=coarse, meta=dict(source=str(folder), **extra))


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")


def stl10_folder(root, download: bool) -> Path:
    """stl10_binary/ under the data root, fetched through torchvision if asked."""
    import torchvision

    folder = data_root(root) / "stl10_binary"
    if not folder.exists():
        if not download:
            raise missing("stl10", folder, "train_X.bin, train_y.bin, test_X.bin, test_y.bin, unlabeled_X.bin")
        torchvision.datasets.STL10(str(data_root(root)), split="test", download=True)
    return folder


def stl10(root, split: str, download: bool = False) -> ImageSet:
    """STL-10 binaries (stl10_binary/): train 5,000, test 8,000, unlabeled 100,000 (label -1), 96x96."""
    folder = stl10_folder(root, download)
    path = folder / f"{split}_X.bin"
    x = np.fromfile(path, dtype=np.uint8)
    if x.size % (3 * 96 * 96):
        raise ValueError(f"truncated STL-10 file {path}: {x.size} bytes, expected a multiple of 27648 (3x96x96)")
    x = x.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)   # column-major planes, as in the original MATLAB export
    if split == "unlabeled":
        y = torch.full((len(x),), -1, dtype=torch.int64)
    else:
        y = torch.from_numpy(np.fromfile(folder / f"{split}_y.bin", dtype=np.uint8).astype(np.int64) - 1)
        if len(y) != len(x):
            raise ValueError(f"STL-10 file {folder / f'{split}_y.bin'} holds {len(y)} labels for the {len(x)} "
                             f"images of {path}: expected one byte per image")
    names = folder / "class_names.txt"
    classes = names.read_text().split() if names.exists() else list(STL10_CLASSES)
    return ImageSet(torch.from_numpy(np.ascontiguousarray(x)), y, classes, meta=dict(source=str(folder)))


def svhn(root, split: str, download: bool = False) -> ImageSet:
    """SVHN cropped digits (svhn/{train,test}_32x32.mat); the label 10 of the files means digit 0."""
    import scipy.io
    import torchvision

    folder = data_root(root) / "svhn"
    path = folder / f"{split}_32x32.mat"
    if not path.exists():
        if not download:
            raise missing("svhn", path, "the cropped-digits format 2 .mat files")
        torchvision.datasets.SVHN(str(folder), split=split, download=True)
    mat = scipy.io.loadmat(path)
    x = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1)))
    y = torch.from_numpy(mat["y"].reshape(-1).astype(np.int64) % 10)
    return ImageSet(x, y, [str(d) for d in range(10)], meta=dict(source=str(path)))


def cifar10c(root, corruption: str, severity: int) -> ImageSet:
    """CIFAR-10-C: CIFAR-10-C/<corruption>.npy holds (50000, 32, 32, 3) = 5 severities x 10,000."""
    if corruption not in CIFAR10C:
        raise ValueError(f"corruption={corruption!r} is not allowed: choose one of {list(CIFAR10C)}")
    if severity not in (1, 2, 3, 4, 5):
        raise ValueError(f"severity={severity!r} is not allowed: choose one of [1, 2, 3, 4, 5]")
    folder = data_root(root) / "CIFAR-10-C"
    path = folder / f"{corruption}.npy"
    if not path.exists():
        raise missing("cifar10c", path, "<corruption>.npy and labels.npy",
                      "fetch CIFAR-10-C.tar from https://zenodo.org/record/2535967 and extract it there")
    array = np.load(path, mmap_mode="r")
    per = len(array) // 5                                               # 10,000 in the release
    part = slice((severity - 1) * per, severity * per)
    x = torch.from_numpy(np.array(array[part])).permute(0, 3, 1, 2).contiguous()   # copied out of the map
    y = torch.from_numpy(np.load(folder / "labels.npy")[part].astype(np.int64))
    return ImageSet(x, y, list(CIFAR10_CLASSES), meta=dict(source=str(path), corruption=corruption, severity=severity))


# --- folders of images, through torchvision ---------------------------------------------------------
def pil_images(dataset, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (PIL image, label) of a torchvision dataset as uint8, short side resized then centre-cropped.

    Shape: returns images (N, 3, S, S) uint8 and labels (N,) int64.
    """
    from torchvision.transforms import v2

    to_tensor = v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()])
    images = torch.empty(len(dataset), 3, image_size, image_size, dtype=torch.uint8)
    labels = torch.empty(len(dataset), dtype=torch.int64)
    for i in range(len(dataset)):                     # decoding JPEGs is one file at a time anyway
        image, label = dataset[i]
        images[i], labels[i] = to_tensor(image.convert("RGB")), int(label)
    return images, labels


# name: (folder under root that must exist, its layout, {split: torchvision split names}, factory)
def _tv(cls_name: str, **fixed):
    import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    return lambda root, split, download: cls(str(root), split=split, download=download, **fixed)


def decode(path) -> "PIL.Image.Image":
    """The image at `path` as RGB; a file PIL cannot decode raises ValueError naming it."""
    from PIL import Image

    with open(path, "rb") as f:
        try:
            with Image.open(f) as image:
                return image.convert("RGB")
        except Exception as error:                                     # PIL raises OSError, SyntaxError, ...
            raise ValueError(f"cannot decode {path} as an image: {error}") from error


class Files(torch.utils.data.Dataset):
    """(path, label) pairs read as (PIL image, label), where no torchvision class reads the layout as needed."""

    def __init__(self, items: list[tuple[Path, int]], classes: list[str]):
        self.items, self.classes = items, classes

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, label = self.items[i]
        return decode(path), label


def _flowers(root, split, download):
    """Flowers102: jpg/image_%05d.jpg, imagelabels.mat (labels 1-102), setid.mat (trnid, valid, tstid)."""
    import scipy.io
    import torchvision

    folder = Path(root) / "flowers-102"
    if download and not (folder / "setid.mat").exists():
        torchvision.datasets.Flowers102(str(root), split=split, download=True)
    key = {"train": "trnid", "val": "valid", "test": "tstid"}[split]
    ids = np.atleast_1d(scipy.io.loadmat(folder / "setid.mat", squeeze_me=True)[key])
    labels = np.atleast_1d(scipy.io.loadmat(folder / "imagelabels.mat", squeeze_me=True)["labels"])
    items = [(folder / "jpg" / f"image_{i:05d}.jpg", int(labels[i - 1]) - 1) for i in ids]
    return Files(items, [f"flower {k}" for k in range(1, 103)])


def _caltech(root, split, download):
    """Caltech101 categories, 30 images per class for training and the rest for testing (the usual protocol)."""
    import torchvision

    full = torchvision.datasets.Caltech101(str(root), target_type="category", download=download)
    y = torch.tensor(full.y)
    rank = torch.arange(len(y)) - torch.searchsorted(y, y)            # position within its class (y is sorted)
    keep = (rank < 30) if split == "train" else (rank >= 30)
    return torch.utils.data.Subset(full, keep.nonzero().squeeze(1).tolist())


FOLDER_SETS = {
    "dtd": ("dtd/dtd", "images/<class>/*.jpg and labels/{train,val,test}1.txt",
            {"train": ("train", "val"), "test": ("test",)}, _tv("DTD", partition=1)),
    "flowers102": ("flowers-102", "jpg/, imagelabels.mat, setid.mat",
                   {"train": ("train", "val"), "test": ("test",)}, _flowers),
    "oxford_pets": ("oxford-iiit-pet", "images/*.jpg and annotations/{trainval,test}.txt",
                    {"train": ("trainval",), "test": ("test",)}, _tv("OxfordIIITPet")),
    "fgvc_aircraft": ("fgvc-aircraft-2013b", "data/images/*.jpg, data/variants.txt, data/images_variant_*.txt",
                      {"train": ("trainval",), "test": ("test",)}, _tv("FGVCAircraft")),
    "food101": ("food-101", "images/<class>/*.jpg and meta/{train,test}.json",
                {"train": ("train",), "test": ("test",)}, _tv("Food101")),
    "caltech101": ("caltech101/101_ObjectCategories", "<class>/image_%04d.jpg, BACKGROUND_Google included",
                   {"train": ("train",), "test": ("test",)}, _caltech),
}


def _class_names(part) -> list[str]:
    if isinstance(part, torch.utils.data.Subset):
        return list(part.dataset.categories)
    return list(part.classes)


def folder_set(name: str, root, split: str, image_size: int, download: bool = False) -> ImageSet:
    """One split of a folder-of-JPEG dataset in FOLDER_SETS (the union of its torchvision splits),
    built once and cached as uint8; labels index one class list shared by every split."""
    folder, layout, splits, factory = FOLDER_SETS[name]
    base = data_root(root)
    if download:                                                       # fetch before the files key the cache
        for s in splits[split]:
            factory(base, s, True)
    if not (base / folder).exists():
        raise missing(name, base / folder, layout)

    def build():
        parts = [factory(base, s, False) for s in splits[split]]
        # DTD names a split's classes from that split's own rows: take the list from its image folders
        classes = (sorted(p.name for p in (base / folder / "images").iterdir()) if name == "dtd"
                   else _class_names(factory(base, splits["train"][0], False)))
        images, labels = [], []
        for part in parts:
            x, y = pil_images(part, image_size)
            names = _class_names(part)
            images.append(x)
            labels.append(torch.tensor([classes.index(names[k]) for k in y.tolist()], dtype=torch.int64))
        return ImageSet(torch.cat(images), torch.cat(labels), classes, meta=dict(source=str(base / folder)))

    return cached(f"{name}-{'+'.join(splits[split])}-{fingerprint(base / folder)}-0-{image_size}", build)


def image_folder(path, split: str, image_size: int) -> ImageSet:
    """Any image folder: <path>/<split>/<class>/<image> (ImageNet-100, an uncurated crawl in one class).

    Every split is labelled by the class folders of train/ (as torchvision's ImageFolder labels train/);
    a test split may lack some of them (a warning, and meta["missing_classes"]) but may not add any.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    path = Path(path).expanduser()
    folders = {"train": ("train",), "test": ("test", "val")}[split]
    folder = next((path / f for f in folders if (path / f).exists()), path / folders[0])
    for where in (path / "train", folder):
        if not where.exists():
            raise missing("imagefolder", where, "<class>/<image> files (torchvision ImageFolder)",
                          "copy or link the images there (there is nothing to download)")
    classes, class_to_idx = find_classes(str(path / "train"))
    unknown = sorted(set(find_classes(str(folder))[0]) - set(classes))
    if unknown:
        raise ValueError(f"{folder} has class folders {unknown} that the training split {path / 'train'} lacks: "
                         f"every split is labelled by the training classes, so add them there or remove them here")
    # a class folder missing here is skipped; an empty one fails only in train/, as in ImageFolder
    items = make_dataset(str(folder), class_to_idx, IMG_EXTENSIONS, allow_empty=split != "train")
    present = {k for _, k in items}
    lacking = [c for k, c in enumerate(classes) if k not in present]
    if lacking:
        warnings.warn(f"{folder} has no images of the training classes {lacking}: its labels still index "
                      f"the {len(classes)} training classes")

    def build():
        images, labels = pil_images(Files(items, classes), image_size)
        return ImageSet(images, labels, classes, meta=dict(source=str(folder), missing_classes=lacking))

    return cached(f"imagefolder-{split}-{fingerprint(folder, extra='/'.join(classes))}-0-{image_size}", build)
