"""``python -m models_zoo``: list the zoo (name, task, default width, coord widths, parameters)."""
from __future__ import annotations

import torch

from . import ZOO


def main() -> None:
    print(f"{'name':<7} {'task':<19} {'default':>7} {'params':>9}  coord widths  description")
    for spec in ZOO.values():
        with torch.device("meta"):
            n = sum(p.numel() for p in spec.build(spec.default_width).parameters())
        widths = ",".join(map(str, spec.coord_widths))
        print(f"{spec.name:<7} {spec.task:<19} {spec.default_width:>7} {n:>9,}  {widths:<12}  {spec.description}")


if __name__ == "__main__":
    main()
