"""The split every model exposes, so methods can work below the input layer (sage)."""

from torch import Tensor, nn


class EmbedBody(nn.Module):
    """forward(x) = body(embed(x)). `embed` is the input layer; `body` the rest, head included."""

    embed: nn.Module
    body: nn.Module

    def forward(self, x: Tensor) -> Tensor:
        return self.body(self.embed(x))

    def vectorise(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """embed(x), and the attention mask the body needs for token inputs (None for the others)."""
        return self.embed(x), None

    def from_vectors(self, vectors: Tensor, mask: Tensor | None = None) -> Tensor:
        """The body's logits on vectors as `vectorise` gives them."""
        return self.body(vectors)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def init_residual(model: nn.Module, zero_linear_bias: bool = False) -> None:
    """The residual networks' initialisation, module by module in order: He-normal convolutions (fan out),
    batch norms at weight 1 and bias 0, and (WRN) linear biases at 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif zero_linear_bias and isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
