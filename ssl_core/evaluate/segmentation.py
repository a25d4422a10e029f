"""The linear segmentation probe on frozen spatial features, scored by mIoU (EVALS["segmentation"])."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssl_core.checks import at_least
from ssl_core.data import ImageSet
from ssl_core.evaluate import register_eval
from ssl_core.evaluate.features import device_of, extract_features


def miou(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> float:
    """Mean intersection-over-union over the whole set (the PASCAL VOC / ADE20K convention).

    IoU_c = |pred = c and target = c| / |pred = c or target = c|, pixels pooled over all images;
    the mean runs over classes whose union is non-empty, background (class 0) included.
    Shape: pred, target (N, H, W) integer class indices in [0, num_classes).
    """
    confusion = torch.bincount(target.flatten().long() * num_classes + pred.flatten().long(),
                               minlength=num_classes ** 2).view(num_classes, num_classes)
    inter = confusion.diag().double()
    union = confusion.sum(0) + confusion.sum(1) - confusion.diag()
    present = union > 0
    return (inter[present] / union[present]).mean().item()


def segmentation_probe(encoder, train: ImageSet, test: ImageSet, device, epochs: int = 20,
                       batch_size: int = 128, lr: float = 1e-2, seed: int = 0) -> float:
    """Linear segmentation probe on frozen spatial features; returns test mIoU (see `miou`).

    A 1x1 convolution maps standardised `encoder.features(x)` (N, D, h, w) to per-class logits,
    upsampled bilinearly to the image size and trained with pixel cross-entropy against the masks
    (AdamW, cosine-decayed learning rate). Classes: 0 .. max mask value over train and test.
    Our small-scale analogue of the FLOPs paper's frozen-backbone segmentation transfer.
    """
    for name, split in (("train", train), ("test", test)):
        if split.masks is None:
            raise ValueError(f"{name} has no masks: the segmentation probe needs an ImageSet with masks")
    at_least("epochs", epochs, 1)
    device = device_of(encoder, device)
    train_f = extract_features(encoder, train.images, device, spatial=True)   # (N, D, h, w)
    test_f = extract_features(encoder, test.images, device, spatial=True)
    num_classes = int(max(train.masks.max(), test.masks.max())) + 1
    mean = train_f.mean((0, 2, 3), keepdim=True)
    std = train_f.std((0, 2, 3), keepdim=True).clamp(min=1e-6)
    size = tuple(train.masks.shape[-2:])
    head = nn.Conv2d(train_f.shape[1], num_classes, 1).to(device)
    for param in head.parameters():   # a convex problem: start from zero, so the seed alone fixes the result
        nn.init.zeros_(param)
    logits = lambda f: F.interpolate(head(((f - mean) / std).to(device)), size=size, mode="bilinear",
                                     align_corners=False)
    steps_per_epoch = -(-len(train_f) // batch_size)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for index in torch.randperm(len(train_f), generator=g).split(batch_size):
            loss = F.cross_entropy(logits(train_f[index]), train.masks[index].to(device).long())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    with torch.no_grad():
        pred = torch.cat([logits(test_f[i:i + batch_size]).argmax(1).cpu()
                          for i in range(0, len(test_f), batch_size)])
    return miou(pred, test.masks, num_classes)


@register_eval("segmentation")
def segmentation_eval(encoder, train: ImageSet, test: ImageSet, device, cache: dict | None = None) -> list[dict]:
    return [{"metric": "miou", "value": segmentation_probe(encoder, train, test, device), "eval": "segmentation"}]
