"""Weighted kNN accuracy on frozen features (EVALS["knn"])."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ssl_core.checks import at_least, positive
from ssl_core.data import ImageSet
from ssl_core.evaluate import register_eval
from ssl_core.evaluate.features import features_for, on_device


def knn_accuracy(train_z: torch.Tensor, train_y: torch.Tensor, test_z: torch.Tensor, test_y: torch.Tensor,
                 k: int = 200, temperature: float = 0.1, chunk: int = 1024) -> float:
    """Weighted kNN accuracy: the classifier of InstDisc (Wu et al. 2018), as lightly and solo-learn run it.

    Each test point takes the k training points of highest cosine similarity s_j and votes for
    their labels with weights exp(s_j / temperature); k is clipped to the train size. Test points
    are processed `chunk` at a time so the similarity matrix never exceeds chunk x N_train.
    Shape: train_z (N, D), train_y (N,), test_z (M, D), test_y (M,); runs on train_z's device.
    """
    at_least("k", k, 1)
    positive("temperature", temperature)
    device = train_z.device
    train_z = F.normalize(train_z.float(), dim=1)
    train_y = train_y.to(device)
    k = min(k, len(train_z))
    num_classes = int(max(train_y.max(), test_y.max())) + 1
    correct = 0
    for start in range(0, len(test_z), chunk):
        z = F.normalize(test_z[start:start + chunk].to(device).float(), dim=1)
        sim, index = (z @ train_z.T).topk(k, dim=1)                          # (B, k)
        votes = torch.zeros(len(z), num_classes, device=device)
        votes.scatter_add_(1, train_y[index], (sim / temperature).exp())    # (B, C)
        correct += (votes.argmax(1).cpu() == test_y[start:start + chunk].cpu()).sum().item()
    return correct / len(test_z)


@register_eval("knn")
def knn_eval(encoder, train: ImageSet, test: ImageSet, device, cache: dict | None = None,
             k: int = 200, temperature: float = 0.1) -> list[dict]:
    train_z, test_z = features_for(encoder, train, device, cache), features_for(encoder, test, device, cache)
    train_z, train_y = on_device(device, train_z, train.labels)
    acc = knn_accuracy(train_z, train_y, test_z, test.labels, k=k, temperature=temperature)
    return [{"metric": "knn_acc", "value": acc, "eval": "knn", "k": k, "knn_temperature": temperature}]
