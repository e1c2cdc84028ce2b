"""The one-line call on torchvision's model catalog (docs/coverage.md, "torchvision"): every model
``torchvision.models.list_models`` names in the families asked for, built with ``weights=None`` and
given to ``sptrace.parametrize(model, "adam")`` with nothing else (inputs inferred). One line per
model: how many parameters are left unclassified, or the error, and the inputs sptrace inferred.

    PYTHONPATH=. OMP_NUM_THREADS=1 python scripts/torchvision_sweep.py classification video segmentation

Needs torchvision (not a dependency of sptrace: run it in an environment that has it).
"""
import argparse
import os
import sys
import time
import warnings

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FAMILIES = ("classification", "video", "segmentation")
# the largest variants of a family, left out of the default sweep for time on a CPU
LARGE = ("vit_h_14", "vit_l_16", "vit_l_32", "regnet_y_16gf", "regnet_y_32gf", "regnet_y_128gf", "vgg13", "vgg13_bn",
         "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "resnet152", "resnext101_32x8d", "resnext101_64x4d",
         "wide_resnet101_2", "convnext_base", "convnext_large", "swin_b", "swin_v2_b", "maxvit_t", "efficientnet_b6",
         "efficientnet_b7", "mvit_v2_s", "swin3d_s", "swin3d_b", "deeplabv3_resnet101", "fcn_resnet101")


def models(family: str) -> list:
    import torchvision

    module = torchvision.models if family == "classification" else getattr(torchvision.models, family)
    return torchvision.models.list_models(module=module)


def sweep_one(name: str, family: str) -> str:
    import torchvision

    import sptrace

    start = time.time()
    try:
        extra = {"weights_backbone": None} if family == "segmentation" else {}
        model = torchvision.models.get_model(name, weights=None, **extra)
        opt = sptrace.parametrize(model, "adam")
    except Exception as exc:  # noqa: BLE001 - a sweep reports every failure, whatever raised it
        return f"{name}: error {type(exc).__name__}: {str(exc)[:300]} ({time.time() - start:.1f} s)"
    left = [r.name for r in opt.sptrace.trace.unclassified]
    inputs = next((w for w in opt.sptrace.warnings if w.startswith("example inputs inferred")), "")
    return f"{name}: {len(left)} unclassified {left[:3]} ({time.time() - start:.1f} s) | {inputs[24:140]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--all", action="store_true", help="the largest variants too")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for family in args.families:
        for name in models(family):
            if args.all or name not in LARGE:
                print(sweep_one(name, family), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
