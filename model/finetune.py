"""What fine-tuning needs of any model: its head, its backbone in units from the input on,
and freezing the backbone.

The head is the model's last layer with weights (a classifier's Linear, a U-Net's last
convolution); everything else is the backbone. Its units, for --layer_decay, are its
top-level modules in order, a module that holds a sequence of blocks (nn.Sequential or
nn.ModuleList: ResNet's layer1..4, EfficientNet's features, a ViT's encoder layers) counted
block by block. Parameter groups are plain dicts, as torch.optim takes them, each with a
`name` (its lr curve: train_step/lr/<name>).
"""

from torch import nn


def head_names(model: nn.Module) -> set[str]:
    """The parameter names of the model's last module with parameters of its own."""
    last = [name for name, module in model.named_modules() if any(True for _ in module.parameters(recurse=False))]
    prefix = last[-1] + "." if last and last[-1] else ""
    return {name for name, _ in model.named_parameters() if name.startswith(prefix)
            and "." not in name[len(prefix):]}


def backbone_units(model: nn.Module) -> list[list[str]]:
    """The backbone's parameter names in units, from the input on (the head left out)."""
    prefix = ""
    while len(list(model.children())) == 1 and not list(model.parameters(recurse=False)):  # a wrapper: look inside
        name, model = next(model.named_children())
        prefix += name + "."
    head = head_names_of(model, prefix)
    units = [[prefix + name for name, _ in model.named_parameters(recurse=False)]]  # e.g. a ViT's class token
    for name, child in model.named_children():
        units += [[f"{prefix}{name}.{inner}" for inner in unit] for unit in child_units(child)]
    return [[name for name in unit if name not in head] for unit in units if any(n not in head for n in unit)]


def child_units(child: nn.Module) -> list[list[str]]:
    """A top-level module's parameter names (relative to it) as units: a sequence of blocks
    block by block, a module holding one (a ViT's encoder) its blocks and the rest around them."""
    if is_sequence(child):
        return [[f"{n}.{p}" for p, _ in block.named_parameters()] for n, block in child.named_children()]
    inner = next(((n, c) for n, c in child.named_children() if is_sequence(c)), None)
    if inner is None:
        return [[n for n, _ in child.named_parameters()]]
    before = [n for n, _ in child.named_parameters(recurse=False)]
    others = [f"{n}.{p}" for n, c in child.named_children() if c is not inner[1] for p, _ in c.named_parameters()]
    blocks = [[f"{inner[0]}.{n}.{p}" for p, _ in block.named_parameters()] for n, block in inner[1].named_children()]
    return [before, *blocks, others]


def is_sequence(module: nn.Module) -> bool:
    return isinstance(module, (nn.Sequential, nn.ModuleList)) and len(module) > 1


def head_names_of(model: nn.Module, prefix: str) -> set[str]:
    return {prefix + name for name in head_names(model)}


def parameter_groups(model: nn.Module, lr: float, backbone_lr_scale: float = 1.0,
                     layer_decay: float = 1.0) -> list[dict]:
    """The model's parameters as optimizer groups: the head at `lr`, each backbone unit at
    lr x backbone_lr_scale x layer_decay ** (units after it, the head counted): the units
    nearest the input learn slowest. One group when both factors are 1."""
    params = dict(model.named_parameters())
    if backbone_lr_scale == 1.0 and layer_decay == 1.0:
        return [{"params": list(params.values()), "lr": lr, "name": "all"}]
    units = backbone_units(model)
    groups = [{"params": [params[name] for name in unit], "name": common_prefix(unit),
               "lr": lr * backbone_lr_scale * layer_decay ** (len(units) - i)} for i, unit in enumerate(units)]
    grouped = {name for unit in units for name in unit}
    groups.append({"params": [p for name, p in params.items() if name not in grouped], "name": "head", "lr": lr})
    return groups


def common_prefix(names: list[str]) -> str:
    """`net.layer1.0` for the parameters of ResNet's first block: what a unit's names share."""
    parts = [name.split(".") for name in names]
    shared = [p[0] for p in zip(*parts) if len(set(p)) == 1]
    return ".".join(shared) if len(names) > 1 else names[0]


def freeze_backbone(model: nn.Module, frozen: bool) -> None:
    """Backbone parameters without gradients (and its BatchNorm layers in eval mode, so their
    running statistics stay those of the pretrained weights), or all trainable again. Call
    after `model.train()`, which puts BatchNorm back in training mode."""
    head = head_names(model)
    for name, param in model.named_parameters():
        if name not in head:
            param.requires_grad_(not frozen)
    if frozen:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and not any(
                    p.requires_grad for p in module.parameters()):
                module.eval()


def trainable_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters()) - trainable


