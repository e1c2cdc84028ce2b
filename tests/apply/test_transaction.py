"""The rollback alone: Snapshot.take / restore on a small model, no trace and no plan."""
import torch
import torch.nn as nn

from sptrace.apply.transaction import INIT_MARK, Snapshot


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_restore_is_bit_identical_in_the_same_tensors():
    net = model()
    weight, bias = net[0].weight, net[0].bias
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    snapshot = Snapshot.take(net, [weight, bias])
    with torch.no_grad():
        weight.mul_(3.0).add_(1e-3)
        bias.zero_()
    assert not torch.equal(weight, before["0.weight"])
    snapshot.restore(net)
    assert net[0].weight is weight and net[0].bias is bias  # restored in place: optimizers keep them
    for name, p in net.named_parameters():
        assert torch.equal(p, before[name]), name
        assert p.dtype == before[name].dtype


def test_only_the_tensors_said_to_change_are_copied():
    net = model()
    snapshot = Snapshot.take(net, [net[2].weight])
    assert set(snapshot.values) == {id(net[2].weight)}
    with torch.no_grad():
        net[1].weight.fill_(7.0)  # not in the snapshot: a restore leaves it as it is
    snapshot.restore(net)
    assert torch.equal(net[1].weight, torch.full((8,), 7.0))


def test_init_marks_come_back_as_they_were():
    net = model()
    setattr(net[0].weight, INIT_MARK, ("gaussian", 0.5, None, 1.0))
    snapshot = Snapshot.take(net, [])
    setattr(net[0].weight, INIT_MARK, ("scale", None, None, 2.0))  # a mark changed by the failed call
    setattr(net[2].weight, INIT_MARK, ("zeros", None, None, 1.0))  # a mark added by it
    snapshot.restore(net)
    assert getattr(net[0].weight, INIT_MARK) == ("gaussian", 0.5, None, 1.0)
    assert not hasattr(net[2].weight, INIT_MARK)
