"""MoE routers in the coord check (docs/rules.md "Mixture-of-experts layers"), two measurements.

    # the coord check of tests/validation/test_validate_moe.py, with the router's figures printed;
    # --scale replaces ROUTER_INIT_SCALE (1 = the readout rule's full init), --norm-topk 0/1 sets a
    # router's norm_topk_prob (Qwen3-MoE, OLMoE, Qwen2-MoE), --batch the tokens per step (diagnosis only)
    python scripts/moe_router.py check qwen3-moe sgd [--seeds 3] [--scale 1e-3] [--norm-topk 1] [--batch 8]

    # the router's SGD gradient split into its part among the chosen experts ("mix") and its part for the
    # chosen experts' total weight against the others ("mass"), and each one's logit change on the first
    # batch's router inputs, summed over the steps, with the init's share W0.dx (--scale as for check)
    python scripts/moe_router.py split qwen3-moe 64 0 [--norm-topk 1] [--layer 0]

    # either on the catalog's build (validate hf:mixtral: sptrace.validation.catalog) instead of the test
    # suite's (tests/external_models.py), and with config fields replaced (a value ending in "w" is
    # times the width), e.g. the test build with the catalog's depth and expert size:
    python scripts/moe_router.py check mixtral sgd --catalog --batch 32 --widths 64 128 256
    python scripts/moe_router.py check mixtral sgd --config num_hidden_layers=2 --config intermediate_size=3.5w

    # validate's own coord check (python -m sptrace validate MODEL --optimizer OPT --seeds N) with every
    # seed's values (CoordCheck.per_seed): per width the mean, the coefficient of variation over the seeds
    # and each seed's value, the slope of the means ± its standard error, the spread of the slope of a
    # 3-seed mean (resampling 3 of the N seeds, the same seeds at every width) and the seeds' own slopes,
    # for the modules and parameters named like --match (default: the routers, "mlp.gate")
    python scripts/moe_router.py seeds hf:mixtral sgd --seeds 8 [--widths 64 128 256] [--match mlp.gate]
    python scripts/moe_router.py seeds hf:qwen3_moe sgd --norm-topk 1   # the released checkpoints' routing

Run from the repository root with OMP_NUM_THREADS=1; a check cell takes 10-80 s on 2 cores.
"""
import argparse
import os
import sys
import warnings

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import models_zoo  # noqa: E402
import sptrace.planning.readouts as readouts  # noqa: E402
from sptrace.validation.models import optimizer_for  # noqa: E402
from sptrace.validation.validate import validation_lr  # noqa: E402
from tests.external_models import MOE_MODELS  # noqa: E402
from tests.validation.external_coord import external_coord_check  # noqa: E402


CATALOG_TYPES = {"mixtral": "mixtral", "qwen3-moe": "qwen3_moe", "olmoe": "olmoe", "qwen2-moe": "qwen2_moe",
                 "gpt-oss": "gpt_oss"}


def _config_value(text, width):
    if text.endswith("w"):
        return round(float(text[:-1]) * width)
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def builder(name, norm_topk, catalog=False, config=()):
    """The test suite's build of ``name`` (or the catalog's), with ``config`` ("field=value") replaced."""
    def build(width):
        if catalog or config:
            if catalog:
                from sptrace.validation.catalog import hf_config
                cfg = hf_config(CATALOG_TYPES[name], width)
            else:
                with torch.device("meta"):
                    cfg = MOE_MODELS[name][0](width).config
            for item in config:
                key, _, value = item.partition("=")
                setattr(cfg, key, _config_value(value, width))
            import transformers
            model = transformers.AutoModelForCausalLM.from_config(cfg)
        else:
            model = MOE_MODELS[name][0](width)
        for module in model.modules():
            if norm_topk is not None and hasattr(module, "norm_topk_prob"):
                module.norm_topk_prob = norm_topk == "1"
        return model
    return build


def check(a):
    verdict = external_coord_check(builder(a.name, a.norm_topk, a.catalog, a.config), "gpt", a.optimizer,
                                   "sp" if a.sp else "sptrace", tuple(a.widths), steps=a.steps, batch_size=a.batch,
                                   n_seeds=a.seeds)
    print(verdict.summary())
    cc = verdict.coord
    for table, values in ((cc.slopes(), cc.records), (cc.slopes(params=True), cc.param_records)):
        for name, fits in table.items():
            if name.split(".")[-1] in ("gate", "router") or name.endswith(("gate.weight", "router.weight")):
                for quantity in ("rms@0", f"delta_rms@{a.steps}", "dnat"):
                    if quantity in fits:
                        shown = ", ".join(f"{x:.3g}" for x in values[name][quantity])
                        print(f"  {name} {quantity}: slope {fits[quantity].slope:+.2f} ({shown})")


def split(a):
    """The router's gradient per token and expert is p_j([j chosen] a_j - b), a_e = <dL/dy, expert_e(x)>,
    b = sum over the chosen of p_e a_e; with the chosen weights q = p / m (m their sum) it is
    m q_j (a_j - sum q a) for the chosen (mix) plus (sum q a) p_j ([j chosen] - m) (mass). A router that
    renormalises over the chosen (y = sum q_e expert_e) has the first part only, with m = 1."""
    spec = models_zoo.get("gpt")
    stream = spec.batches(a.batch, seed=0)
    batches = [next(stream) for _ in range(a.steps)]
    torch.manual_seed(a.seed)
    model = builder(a.name, a.norm_topk, a.catalog, a.config)(a.width)
    block = model.model.layers[a.layer].mlp
    gate, experts = block.gate, block.experts
    normed = getattr(gate, "norm_topk_prob", True)
    opt = optimizer_for(model, "sptrace", "sgd", validation_lr("sgd", "reference"), batches[0][0])
    lr = next(g["lr"] for g in opt.param_groups if any(p is gate.weight for p in g["params"]))
    seen = {}

    def hook(module, inputs, output):
        seen["x"] = inputs[0].reshape(-1, inputs[0].shape[-1]).detach()
        if output.requires_grad:
            output.register_hook(lambda g: seen.__setitem__("g", g.reshape(-1, g.shape[-1]).detach()))

    block.register_forward_hook(hook)
    last = model.model.layers[-1]
    if last is not model.model.layers[a.layer]:  # the residual's straight path: dL/d(last layer's output)
        def last_hook(module, inputs, output):
            if output.requires_grad:
                output.register_hook(lambda g: seen.__setitem__("g_last", g.reshape(-1, g.shape[-1]).detach()))

        last.register_forward_hook(last_hook)
    w0 = gate.weight.detach().clone()
    with torch.no_grad():
        model(*batches[0][0])
    probe = seen["x"].clone()
    moved = {k: torch.zeros_like(w0) for k in ("mix", "mass", "direct")}
    rms = lambda t: float(t.pow(2).mean().sqrt())  # noqa: E731
    for step, (inputs, target) in enumerate(batches, 1):
        opt.zero_grad()
        spec.loss(model(*inputs).logits, target).backward()
        with torch.no_grad():
            x, g = seen["x"], seen["g"]
            p = torch.softmax(x @ gate.weight.T, -1)
            chosen = torch.zeros_like(p).scatter_(1, p.topk(gate.top_k, -1).indices, 1.0)
            gate_up = torch.einsum("tn,ean->tea", x, experts.gate_up_proj).chunk(2, dim=-1)
            outs = torch.einsum("tei,eni->ten", experts.act_fn(gate_up[0]) * gate_up[1], experts.down_proj)
            parts = _parts(p, chosen, torch.einsum("tn,ten->te", g, outs), normed)
            error = float((sum(parts.values()).T @ x - gate.weight.grad).norm() / gate.weight.grad.norm())
            for key, part in parts.items():
                moved[key] -= lr * part.T @ x
            if "g_last" in seen:  # the same gradient with dL/dy replaced by its straight-path part
                moved["direct"] -= lr * sum(_parts(p, chosen, torch.einsum("tn,ten->te", seen["g_last"], outs),
                                                   normed).values()).T @ x
        opt.step()
        if step in (3, a.steps):
            with torch.no_grad():
                model(*batches[0][0])  # the probe's router input now: the init's share W0 (x_t - x_0)
                paths = ""
                if "g_last" in seen:
                    later = moved["mix"] + moved["mass"] - moved["direct"]
                    paths = (f"; by path: residual to the last layer's output {rms(probe @ moved['direct'].T):.3g}, "
                             f"through the later layers' blocks {rms(probe @ later.T):.3g}")
                print(f"{a.name} layer {a.layer} width {a.width} seed {a.seed} renormalised {normed} step {step}: "
                      f"logit change {rms(probe @ (gate.weight - w0).T):.3g} (mix {rms(probe @ moved['mix'].T):.3g}, "
                      f"mass {rms(probe @ moved['mass'].T):.3g}); init's share W0.dx "
                      f"{rms((seen['x'] - probe) @ w0.T):.2g}; split error {error:.0e}{paths}")


def _parts(p, chosen, a_te, normed):
    """The router's logit gradient per token and expert, split into mix and mass (see split), for the
    expert scores a_te."""
    q = p * chosen / (p * chosen).sum(-1, keepdim=True)
    m = torch.ones_like(p[:, :1]) if normed else (p * chosen).sum(-1, keepdim=True)
    mean = (q * a_te).sum(-1, keepdim=True)
    return {"mix": m * q * chosen * (a_te - mean), "mass": torch.zeros_like(p) if normed else mean * p * (chosen - m)}


def seeds(a):
    """validate(a.model, ...) with each seed's values read from its coord check (CoordCheck.per_seed)."""
    import math
    import random

    from sptrace.validation.slopes import fit_slope
    from sptrace.validation.validate import validate

    # the catalog's config with the router's norm_topk_prob set (hf: models; validate --option)
    options = {} if a.norm_topk is None else {"norm_topk_prob": a.norm_topk == "1"}
    result = validate(a.model, a.widths, optimizer=a.optimizer, steps=a.steps, batch_size=a.batch,
                      n_seeds=a.seeds, parametrizations=("sptrace",), build_options=options)
    print(result.summary())
    cc = result.runs["sptrace"].coord
    rng = random.Random(0)
    quantities = (f"delta_rms@{a.steps}", "dnat")
    for kind, params, kept in (("module", False, cc.per_seed.records), ("parameter", True, cc.per_seed.param_records)):
        fits = cc.slopes(quantities, params=params)
        for name in (n for n in fits if a.match in n):
            for q, fit in fits[name].items():
                per_width, means = list(zip(*kept[name][q])), fit.values  # [width][seed], the verdict's means
                n = len(per_width[0])
                if n < 2 or min(x for v in per_width for x in v) <= 0:  # or a zero-started readout before it moves
                    print(f"{kind} {name} [{q}]: {n} seed(s) or zero at some width and seed, {per_width}")
                    continue
                cvs = [math.sqrt(sum((x - m) ** 2 for x in v) / (n - 1)) / m for v, m in zip(per_width, means)]
                print(f"{kind} {name} [{q}]: slope of the means {fit.slope:+.2f} ± {fit.se:.2f}")
                for w, m, cv, v in zip(cc.widths, means, cvs, per_width):
                    print(f"  width {w}: mean {m:.3g}, CV {cv:.2f}, seeds {' '.join(f'{x:.3g}' for x in v)}")
                three = []
                for _ in range(1000):
                    pick = [rng.randrange(n) for _ in range(3)]
                    three.append(fit_slope(cc.widths, [sum(v[i] for i in pick) / 3 for v in per_width]).slope)
                mu = sum(three) / len(three)
                print(f"  3-seed mean's slope: sd {math.sqrt(sum((x - mu) ** 2 for x in three) / len(three)):.2f}; "
                      f"the seeds' own slopes {' '.join(f'{x:+.2f}' for x in fit.seed_slopes)}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    c = sub.add_parser("check")
    c.add_argument("name", choices=sorted(MOE_MODELS))
    c.add_argument("optimizer")
    c.add_argument("--seeds", type=int, default=3)
    c.add_argument("--sp", action="store_true")
    c.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512])
    s = sub.add_parser("split")
    s.add_argument("name", choices=("qwen3-moe", "olmoe", "qwen2-moe", "mixtral"))  # routers named gate
    s.add_argument("width", type=int)
    s.add_argument("seed", type=int)
    s.add_argument("--layer", type=int, default=0, help="the decoder layer whose router is split")
    v = sub.add_parser("seeds")
    v.add_argument("model", help="as for python -m sptrace validate, e.g. hf:mixtral")
    v.add_argument("optimizer")
    v.add_argument("--seeds", type=int, default=8)
    v.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    v.add_argument("--steps", type=int, default=4)
    v.add_argument("--batch", type=int, default=32)
    v.add_argument("--match", default="mlp.gate", help="judge the names containing this")
    for p in (c, s, v):
        p.add_argument("--norm-topk", choices=("0", "1"), default=None)
    for p in (c, s):
        p.add_argument("--scale", type=float, default=None)
        p.add_argument("--batch", type=int, default=8)
        p.add_argument("--steps", type=int, default=10)
        p.add_argument("--catalog", action="store_true", help="the catalog's build (validate hf:<type>)")
        p.add_argument("--config", action="append", default=[], help="field=value, value*width if it ends in w")
    a = parser.parse_args(argv)
    if getattr(a, "scale", None) is not None:
        readouts.ROUTER_INIT_SCALE = a.scale
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    {"check": check, "split": split, "seeds": seeds}[a.what](a)


if __name__ == "__main__":
    main()
