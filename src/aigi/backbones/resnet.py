"""ResNet written here, with torchvision's parameter names, so official CNNSpot, NPR and
DFFreq checkpoints (and torchvision ImageNet weights) load without renaming.

``ResNet(stages=4, fc_name="fc")`` is torchvision's ResNet-50; ``ResNet(stages=2,
stem="npr", fc_name="fc1")`` is the truncated ResNet-50 of NPR and DFFreq (conv1 3×3 stride 2,
``layer1``, ``layer2``, global pool, ``fc1`` = Linear(512, 1)).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from torch import nn


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3×3 conv), torchvision names."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet; ``blocks``, ``stages``, ``stem``, ``width`` and the head name are options."""

    def __init__(
        self,
        blocks: tuple[int, ...] = (3, 4, 6, 3),
        *,
        stages: int = 4,
        stem: Literal["imagenet", "npr"] = "imagenet",
        width: int = 64,
        num_outputs: int = 1,
        fc_name: str = "fc",
    ) -> None:
        super().__init__()
        if not 1 <= stages <= len(blocks):
            raise ValueError(f"stages must be in 1..{len(blocks)}, got {stages}")
        self.fc_name = fc_name
        self.stages = stages
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        cin = width
        for i in range(stages):
            planes = width * 2**i
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or cin != planes * Bottleneck.expansion:
                downsample = nn.Sequential(
                    _conv1x1(cin, planes * Bottleneck.expansion, stride),
                    nn.BatchNorm2d(planes * Bottleneck.expansion),
                )
            layers = [Bottleneck(cin, planes, stride, downsample)]
            cin = planes * Bottleneck.expansion
            layers += [Bottleneck(cin, planes) for _ in range(1, blocks[i])]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.feature_dim = cin
        self.add_module(fc_name, nn.Linear(cin, num_outputs))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def head(self) -> nn.Linear:
        return getattr(self, self.fc_name)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, feature_dim) before the head."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resnet50(**kwargs) -> ResNet:
    return ResNet((3, 4, 6, 3), **kwargs)


# -- ImageNet weights -------------------------------------------------------------------
def load_imagenet_weights(net: ResNet, source: str | os.PathLike) -> None:
    """Load ImageNet weights into ``net`` (the classifier head is left as it is).

    ``source`` is a torchvision-format ``.pth`` state dict (loaded with
    ``weights_only=True``) or a Hugging Face ResNet (``microsoft/resnet-50`` or a local
    folder of it), whose names are mapped onto torchvision's.
    """
    path = Path(source)
    if path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
    else:
        state = _hf_resnet_state(str(source))
    own = net.state_dict()
    body = {k: v for k, v in state.items() if not k.startswith(("fc.", "fc1."))}
    missing = sorted(k for k in own if k not in body and not k.startswith(f"{net.fc_name}."))
    unexpected = sorted(k for k in body if k not in own)
    if unexpected and all(k.startswith(tuple(f"layer{i}." for i in range(net.stages + 1, 5))) for k in unexpected):
        # A truncated network takes the stages it has from a full ResNet-50.
        body = {k: v for k, v in body.items() if k in own}
        unexpected = []
    if missing or unexpected:
        raise ValueError(
            f"ImageNet weights from {source} do not fit this ResNet: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}"
        )
    for k, v in body.items():
        if own[k].shape != v.shape:
            raise ValueError(f"ImageNet weight {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    net.load_state_dict(body, strict=False)  # only the head is absent: every other key was checked above


def hf_resnet_to_torchvision(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a transformers ``ResNetModel``/``ResNetForImageClassification`` state dict to torchvision names."""
    out: dict[str, torch.Tensor] = {}
    norm = {"weight": "weight", "bias": "bias", "running_mean": "running_mean",
            "running_var": "running_var", "num_batches_tracked": "num_batches_tracked"}
    for key, value in state.items():
        k = key[len("resnet."):] if key.startswith("resnet.") else key
        parts = k.split(".")
        if k.startswith("embedder.embedder."):
            kind, leaf = parts[2], parts[3]
            out[("conv1." if kind == "convolution" else "bn1.") + norm[leaf]] = value
        elif k.startswith("encoder.stages."):
            stage, block = int(parts[2]), int(parts[4])
            prefix = f"layer{stage + 1}.{block}."
            if parts[5] == "shortcut":
                idx = "0" if parts[6] == "convolution" else "1"
                out[prefix + f"downsample.{idx}." + norm[parts[7]]] = value
            elif parts[5] == "layer":
                i = int(parts[6]) + 1
                kind = "conv" if parts[7] == "convolution" else "bn"
                out[prefix + f"{kind}{i}." + norm[parts[8]]] = value
        elif k.startswith("classifier.1."):
            out["fc." + parts[2]] = value
    return out


def _hf_resnet_state(source: str) -> dict[str, torch.Tensor]:
    from transformers import ResNetModel

    try:
        model = ResNetModel.from_pretrained(source)
    except OSError as err:
        raise OSError(
            f"could not load ImageNet ResNet weights from {source!r} ({err}). Without network "
            "access pass a torchvision-format .pth file or a local folder holding microsoft/resnet-50."
        ) from None
    return hf_resnet_to_torchvision(model.state_dict())
