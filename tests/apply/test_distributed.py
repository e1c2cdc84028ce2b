"""A plan applied under torch.distributed on CPU: 2 processes over gloo, spawned from the test.

The plan is made once here (on meta) and handed to each rank as its JSON dict: the ranks never
trace. The zoo GPT with the attention scale installed as its forward multiplier; under FSDP2 its
readout is tied to the token embedding (one sharded Parameter under two names, which ``fully_shard``
and ``to_empty`` keep tied), so the tied readout's multiplier is installed too. DDP: every rank
initialises the whole model from the same seed; FSDP2 (``fully_shard``): each rank initialises its
own shards (sptrace.apply.sharded). Each run is compared with the
unsharded run of the same plan in this process: the same init (DDP: bit for bit; FSDP2: the
gathered shards), the same param groups, and the same losses over a few Adam steps. The DDP and FSDP2 runs are in the
default suite (10-14 s each on 2 cores); the orthogonal-init run is under -m slow.
"""
import os
import socket
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import models_zoo
import sptrace

SPEC = models_zoo.get("gpt")
WORLD, STEPS, BATCH, WIDTH = 2, 3, 8, 64
fully_shard = pytest.importorskip("torch.distributed.fsdp").__dict__.get("fully_shard")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_plan(tied=False, **options) -> sptrace.Plan:
    with torch.device("meta"):
        base, model = SPEC.build(32, tied=tied), SPEC.build(WIDTH, tied=tied)
    return sptrace.plan(model, "adam", lr=3e-3, example_inputs=SPEC.example_inputs(), base=base, attention_fix=True,
                        **options)


def materialised(plan: sptrace.Plan, seed: int = 0, tied=False):
    with torch.device("meta"):
        model = SPEC.build(WIDTH, tied=tied)
    model.to_empty(device="cpu")
    if tied:  # to_empty on a plain module unties shared parameters
        model.lm_head.weight = model.transformer.wte.weight
    torch.manual_seed(seed)
    plan.init_(model)
    return model


def train(model, opt, rank=0, world=1):
    """Losses of the full batch (this rank's share: its rows, its mean, averaged over the ranks)."""
    losses = []
    for inputs, target in SPEC.batches(BATCH, seed=0, steps=STEPS):
        rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        loss = SPEC.loss(model(*(t[rows] for t in inputs)), target[rows])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss = loss.detach()
        if world > 1:
            dist.all_reduce(loss)
            loss /= world
        losses.append(float(loss))
    return losses


def group_view(groups):
    return [(g["lr"], g["weight_decay"], list(g["sptrace_names"])) for g in groups]


def unprefixed(view, prefix):
    return [(lr, wd, [n.removeprefix(prefix) for n in names]) for lr, wd, names in view]


def full(tensor):
    return tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor


def worker(rank, port, out, plan_dict, mode):
    warnings.filterwarnings("ignore")
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        plan = sptrace.load_plan(plan_dict)
        if mode == "ddp":
            model = materialised(plan)
            plan.install(model)
            wrapped = torch.nn.parallel.DistributedDataParallel(model)
        else:
            with torch.device("meta"):
                model = SPEC.build(WIDTH, tied=True)
            for block in model.transformer.h:
                fully_shard(block)
            wrapped = fully_shard(model)
            model.to_empty(device="cpu")
            torch.manual_seed(0)
            plan.init_(model)
            plan.install(model)
            assert model.lm_head.weight is model.transformer.wte.weight
        opt = plan.optimizer(wrapped)
        init = {n: full(p.detach()).clone() for n, p in model.named_parameters()}
        local = {n: p.detach().to_local().clone() for n, p in model.named_parameters() if hasattr(p, "to_local")}
        result = {"init": init, "local": local, "groups": group_view(opt.param_groups),
                  "losses": train(wrapped, opt, rank, WORLD)}
        torch.save(result, os.path.join(out, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def spawn(tmp_path, plan, mode):
    mp.spawn(worker, args=(free_port(), str(tmp_path), plan.to_dict(), mode), nprocs=WORLD)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.fixture(scope="module")
def plan():
    return make_plan()


@pytest.fixture(scope="module")
def tied_plan():
    return make_plan(tied=True)


def unsharded(plan, init=None, tied=False):
    model = materialised(plan, tied=tied)
    if init is not None:
        model.load_state_dict(init, strict=False)
    plan.install(model)
    opt = plan.optimizer(model)
    return model, opt


def test_ddp_same_init_groups_and_losses_as_one_process(tmp_path, plan):
    ranks = spawn(tmp_path, plan, "ddp")
    model, opt = unsharded(plan)
    init = {n: p.detach().clone() for n, p in model.named_parameters()}
    losses = train(model, opt)
    for r in ranks:
        assert r["init"].keys() == init.keys() and all(torch.equal(r["init"][n], v) for n, v in init.items())
        assert unprefixed(r["groups"], "module.") == group_view(opt.param_groups)
        assert all(n.startswith("module.") for g in r["groups"] for n in g[2])
        assert r["losses"] == pytest.approx(losses, rel=1e-5)


@pytest.mark.skipif(fully_shard is None, reason="torch.distributed.fsdp.fully_shard needs torch >= 2.6")
def test_fsdp2_shards_initialise_themselves_and_train_as_one_process(tmp_path, tied_plan):
    plan = tied_plan
    assert [m.what for m in plan.multipliers] == ["tied readout input"] + ["attention scale"] * 2
    ranks = spawn(tmp_path, plan, "fsdp")
    gathered = ranks[0]["init"]
    assert all(torch.equal(gathered[n], ranks[1]["init"][n]) for n in gathered)  # one model, two shards
    reference = materialised(plan, seed=1, tied=True)  # the single-process init, for its statistics
    for name, p in reference.named_parameters():
        if p.numel() > 256:
            assert float(gathered[name].std()) == pytest.approx(float(p.detach().std()), rel=0.1), name
    drawn = [n for n, p in ranks[0]["local"].items() if p.numel() > 1 and p.std() > 0]
    assert drawn and not any(torch.equal(ranks[0]["local"][n], ranks[1]["local"][n]) for n in drawn)

    model, opt = unsharded(plan, init=gathered, tied=True)
    assert ranks[0]["groups"] == group_view(opt.param_groups)
    assert ranks[0]["losses"] == pytest.approx(train(model, opt), rel=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(fully_shard is None, reason="torch.distributed.fsdp.fully_shard needs torch >= 2.6")
def test_fsdp2_orthogonal_init_draws_the_whole_matrix(tmp_path):
    plan = make_plan(init="orthogonal")
    ranks = spawn(tmp_path, plan, "fsdp")
    weight = ranks[0]["init"]["transformer.h.0.mlp.c_fc.weight"]
    singular = torch.linalg.svdvals(weight.double())
    assert torch.allclose(singular, singular[0].expand_as(singular), rtol=1e-4)
    assert float(singular[0]) == pytest.approx(plan["transformer.h.0.mlp.c_fc.weight"].init_target, rel=1e-4)
