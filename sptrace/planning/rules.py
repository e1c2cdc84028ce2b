"""The rule table: what Condition 2 asks of each parameter, per optimizer family, in one place.

Read with docs/rules.md (the same table in markdown, with derivations). Every rule reads only a
:class:`~sptrace.types.ParamRecord` (spaces, fan axes, width flags, base shape) and an optimizer
family. Notation (docs/derivations.md §1): a parameter is a linear operator, one *block* of which
maps a space of ``fan_in`` coordinates to one of ``fan_out`` coordinates; effective dims are

    d_in  = fan_in  if the input space is dense  else 1      (one-hot ids, a bias's constant 1)
    d_out = fan_out if the output space is dense else 1

and Condition 2 (natural spectral norm Θ(1)) reads, in raw spectral norm,
``||W||_* ≈ ||ΔW||_* ≈ sqrt(d_out / d_in)``.

Families (:func:`optimizer_family`), each with its lr law (:data:`LR_LAWS`): ``"sgd"`` (any update
linear in the gradient: Parametrization 1, Eq. 19-20), ``"adam"`` (entrywise-normalised or sign-like:
Adam, AdamW, RMSprop, Adagrad, Lion, signSGD...: §3.3), ``"spectral"`` (:class:`sptrace.optim.SpectralSGD`,
steepest descent under the spectral norm, Eq. 17, orthogonalised updates as in Muon).

Parametrizations (``parametrization=``, one function each): ``"sptrace"`` (sptrace's own:
Parametrization 1, μP), and the baselines for validation ``"sp"`` (standard parametrization,
§5.2 Eq. 21: library-default init, one global lr) and ``"ntp"`` (§5.3 Eq. 22).

Three forms (``form=``, docs/derivations.md §6): ``"absolute"`` (the paper's width-free constants;
``lr`` a Θ(1) prefactor), ``"base"`` (every factor divided by its value at the base model's shapes,
:mod:`sptrace.planning.library`) and ``"reference"`` (against a virtual base at the reference width,
:mod:`sptrace.planning.reference`; parametrize's default without a base model).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, Sequence, Union

from ..types import Dims, ParamRecord, ParamUse, Role, Rule, Space, SptraceError
from .library import library_std_ratio
from .readouts import C_ZERO, readout_start, router_init

__all__ = [
    "FAMILIES", "PARAMETRIZATIONS", "optimizer_family", "effective_dims", "rule_for", "forward_multiplier",
    "gaussian_std", "init_spectral_target", "lr_factor", "check_parametrization", "check_form", "ANCHORED_FORMS", "check_zero_readout",
    "snap",
]

FAMILIES = ("sgd", "adam", "spectral")
PARAMETRIZATIONS = ("sptrace", "sp", "ntp")
FORMS = ("absolute", "base", "reference")
ANCHORED_FORMS = ("base", "reference")
INIT_CHOICES = ("default", "gaussian", "orthogonal", "spectral", "keep")

# --- citations (kept short; docs/rules.md has the derivations) --------------------------------
C_COND = "Condition 1/2, Appendix E (natural norms); effective dims docs/derivations.md §1"
C_SIGMA = ("Parametrization 1 (sigma); finite dims are constants: input min->1, readout sqrt(fan_out)/fan_in "
           "(docs/derivations.md §3)")
C_EMBED = "Appendix E: sparse (one-hot) input, d_in = 1 -> entries Θ(1) (docs/derivations.md §1)"
C_BIAS = "Appendix D: bias = n_out x 1 operator from the constant-1 space; sigma_b = 0 in practice"
C_GAIN = ("docs/derivations.md §1: elementwise gain is diagonal, d_in = 1; entries Θ(1): the library's constant "
          "is kept")
C_SCALAR = "docs/derivations.md §1: scalars are Θ(1); nothing to scale"
C_SGD = ("Parametrization 1 (eta = d_out/d_in), Eq. 19-20; Appendix D (bias eta = n_out); x blocks for "
         "block-diagonal ops")
C_ADAM = "§3.3 + docs/derivations.md §2: sign-like updates, ||dW|| ~ eta sqrt(n_out n_in) -> eta = 1/d_in"
C_SPEC = "Eq. 17: dW = -eta sqrt(d_out/d_in) UV^T (per block); group lr multiplier 1"
C_WD = "decay shrink per step lr*wd must be width-independent -> wd multiplier = 1/lr multiplier (docs/rules.md)"
C_BASE = ("anchored to the base shapes (base model or reference width): every factor divided by its value "
          "there (docs/derivations.md §6)")
C_SP = "§5.2 Eq. 21 (SP): library-default init, one global lr"
C_NTP = "§5.3 Eq. 22 (NTP): sigma = 1/sqrt(fan_in), SGD eta = 1/fan_in (Adam: 1/sqrt(fan_in))"
C_UNCL = "unclassified: library-default init and the plain lr"
C_EPS = "Adam eps ∝ gradient size η_Adam/η_SGD, so eps/|g| is width-free (docs/rules.md, Adam's ε)"
C_CONST = ("forward constant c ~ n^p on the output: the rules hold for c W, so init / c, Adam lr / c, SGD lr / c^2, "
           "spectral scale / c (docs/rules.md \"Constants in the forward\")")


# --- optimizer families --------------------------------------------------------------------------
_SGD_NAMES = {"sgd", "momentum", "nesterov", "asgd", "heavyball"}
_ADAM_NAMES = {
    "adam", "adamw", "adamax", "nadam", "radam", "rmsprop", "adagrad", "adadelta", "lion", "signsgd",
    "sign", "signum", "sparseadam", "adafactor", "lamb_free_adam",
}
_SPECTRAL_NAMES = {"spectral", "spectralsgd", "muon", "orthogonal", "spectral_sgd", "steepest_spectral"}


def optimizer_family(optimizer: Any) -> str:
    """``"sgd"``, ``"adam"`` or ``"spectral"`` for a name, an optimizer class or an instance."""
    if isinstance(optimizer, str):
        name = optimizer.lower().replace("-", "").replace(" ", "")
    else:
        cls = optimizer if isinstance(optimizer, type) else type(optimizer)
        name = cls.__name__.lower()
    if name in FAMILIES:
        return name
    if name in _SGD_NAMES:
        return "sgd"
    if name in _ADAM_NAMES:
        return "adam"
    if name in _SPECTRAL_NAMES:
        return "spectral"
    raise SptraceError(
        f"unknown optimizer {optimizer!r}: say which family it belongs to: 'sgd' (update linear in the "
        f"gradient), 'adam' (entrywise-normalised / sign-like) or 'spectral' (orthogonalised, Eq. 17)"
    )


# --- dims ----------------------------------------------------------------------------------------
def _block_count(record: ParamRecord, shape, groups: int) -> int:
    use = record.uses[0] if record.uses else None
    group_axes = use.group_axes if use is not None else ()
    return groups * math.prod(shape[a] for a in group_axes)


def check_parametrization(parametrization: str) -> str:
    """The name itself, or an SptraceError that says which names there are."""
    if parametrization == "spectral":
        raise SptraceError(
            "parametrization='spectral' is now called parametrization='sptrace' (sptrace's own, μP / "
            "Parametrization 1); 'spectral' names the optimizer family (SpectralSGD) only"
        )
    if parametrization not in PARAMETRIZATIONS:
        raise SptraceError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
    return parametrization


def check_form(form: str) -> str:
    """``"absolute"``, ``"base"`` or ``"reference"``, or an SptraceError naming the argument."""
    if form not in FORMS:
        raise SptraceError(f"form must be one of {FORMS} ('reference': lr is the lr at the reference width; "
                           "'base': at the base model's width; 'absolute': lr is the rules' width-free prefactor), "
                           f"got {form!r}")
    return form


def effective_dims(record: ParamRecord, *, at: str = "model") -> Dims:
    """Effective dims of one block (docs/derivations.md §1), at the model's shapes (``at="model"``)
    or the base model's (``at="base"``)."""
    if at not in ("model", "base"):
        raise SptraceError(f"effective_dims(at=...) must be 'model' or 'base', got {at!r}")
    at_base = at == "base"
    if at_base:
        if record.base_shape is None:
            raise SptraceError(f"{record.name}: base form asked for, but the record has no base shape")
        shape, groups = record.base_shape, record.base_groups or record.groups
        fan_in, fan_out = record.base_fan_in, record.base_fan_out
    else:
        shape, groups = record.shape, record.groups
        fan_in, fan_out = record.fan_in, record.fan_out
    if fan_in <= 0 or fan_out <= 0:  # a reference shape may be below 1 (planning/reference.py): only ratios are read
        raise SptraceError(
            f"{record.name}: empty block at the {at} shape (fan_in {fan_in}, fan_out {fan_out}; "
            f"groups {groups}{'; base_groups unset?' if at_base and record.base_groups is None else ''})"
        )
    sparse_in = record.input_space is Space.SPARSE
    width = set(record.width_dims)
    shape_w = [s if a in width else 1 for a, s in enumerate(shape)]

    def width_only(axes) -> float:
        size = float(math.prod(shape_w[a] for a in axes))
        return size / groups if (0 in axes and 0 in width) else size

    return Dims(
        fan_in=fan_in, fan_out=fan_out,
        d_in=1 if sparse_in else fan_in,
        d_out=fan_out if record.output_space is Space.DENSE else 1,
        blocks=_block_count(record, shape, groups),
        fan_in_w=width_only(record.fan_in_axes), fan_out_w=width_only(record.fan_out_axes),
        fan_in_width=record.fan_in_is_width, fan_out_width=record.fan_out_is_width,
        sparse_in=sparse_in,
    )


# --- the rules, as formulas ----------------------------------------------------------------------
def _m(d: Dims) -> float:
    """Parametrization 1's min(1, sqrt(fan_out/fan_in)), with docs/derivations.md §3's limits for fixed dims.

    The min() is a statement about the width limit, so only width enters it:

    * both sides width: min(1, sqrt(fan_out_w/fan_in_w)) over the width axes only. For a matmul
      this is the literal rule (e.g. 1/2 for a 4n -> n down-projection); for a conv the fixed
      kernel area stays out of it (n -> n channels with a 3x3 kernel: m = 1, sigma =
      1/sqrt(9n), Kaiming; the literal 1/3 would shrink every conv layer's output 3x, compounding
      with depth, for no width reason).
    * both fixed: literal min(1, sqrt(d_out/d_in)) (a constant either way).
    * fixed fan-in, width fan-out (input layer, embedding, depthwise conv): fan_out -> inf, so 1.
    * width fan-in, fixed fan-out (readout): fan_in -> inf, so sqrt(d_out/d_in).
    """
    if d.fan_in_width and d.fan_out_width:
        fan_in_w = 1.0 if d.sparse_in else d.fan_in_w
        return min(1.0, math.sqrt(d.fan_out_w / fan_in_w))
    if not d.fan_in_width and not d.fan_out_width:
        return min(1.0, math.sqrt(d.d_out / d.d_in))
    return 1.0 if d.fan_out_width else math.sqrt(d.d_out / d.d_in)


def gaussian_std(d: Dims) -> float:
    """Parametrization 1: sigma = (1/sqrt(d_in)) * m (times a Θ(1) gain, e.g. sqrt(2) for ReLU).

    Dense input, e.g. the paper's MLP 3072 -> n -> n -> 10: input 1/sqrt(3072), hidden 1/sqrt(n),
    readout sqrt(10)/n. Sparse input (embedding): d_in = 1 and the fan-in (vocabulary) is fixed,
    so sigma = 1: looked-up vectors have RMS 1.
    """
    return _m(d) / math.sqrt(d.d_in)


def init_spectral_target(d: Dims) -> float:
    """Raw spectral norm per block for orthogonal / Eq. 16 init: sqrt(d_out/d_in), docs/derivations.md §3 limit.

    When the fan-in is fixed and the fan-out grows (input layer, embedding), the layer's input is
    data, not aligned with W, and while fan_out < fan_in the block is rank-deficient: a literal
    sqrt(d_out/d_in) then makes the output RMS grow like sqrt(fan_out) (the finite-width trap of
    docs/derivations.md §3). The width limit (fan_out -> inf) is taken instead: sqrt(max(fan_out, fan_in)/d_in),
    equal to sqrt(d_out/d_in) once fan_out >= fan_in. A semi-orthogonal block then maps a generic
    input to output RMS exactly 1 at every width (input layer) and looks up vectors of RMS 1
    (embedding). When both sides are width the ratio is taken over width axes only, as in
    :func:`_m` (a hidden 3x3 conv: 1, so a semi-orthogonal n x 9n block keeps the RMS of a generic
    patch; a linear layer: the literal sqrt(fan_out/fan_in)).
    """
    if d.fan_out_width and not d.fan_in_width:
        return math.sqrt(max(d.d_out, d.fan_in) / d.d_in)
    if d.fan_out_width and d.fan_in_width and not d.sparse_in:
        return math.sqrt(d.fan_out_w / d.fan_in_w)
    return math.sqrt(d.d_out / d.d_in)


def lr_factor(family: str, d: Dims) -> float:
    """The absolute lr multiplier of a family (Condition 2 on ΔW): :data:`LR_LAWS`."""
    if family not in LR_LAWS:
        raise SptraceError(f"unknown optimizer family {family!r}; known: {', '.join(FAMILIES)}")
    return LR_LAWS[family](d)


def _sgd_lr(d: Dims) -> float:
    """Parametrization 1, eta = d_out/d_in (Eq. 19-20: ||grad||_* = Θ(sqrt(d_in/d_out))).

    For a block-diagonal operator (conv groups, einsum batch axes) the loss change sums over the
    blocks, so each block's gradient is ``blocks`` times smaller and eta = blocks * d_out/d_in.
    This gives a bias or gain eta = n_out (Appendix D), a depthwise conv eta ∝ channels (like a
    gain), and per-head weights the same eta as the fused matrix.
    """
    return d.blocks * d.d_out / d.d_in


def _adam_lr(d: Dims) -> float:
    """§3.3, sign-like updates: entries ≈ ±eta with low stable rank, so ||ΔW||_* ≈ eta
    sqrt(n_out n_in_active); setting it to sqrt(d_out/d_in) gives eta = 1/d_in (hidden / readout
    1/fan_in, input 1/fan_in (a constant), embedding / bias / gain 1; docs/derivations.md §2)."""
    return 1.0 / d.d_in


def _spectral_lr(d: Dims) -> float:
    """Eq. 17: SpectralSGD applies sqrt(d_out/d_in) itself (``spectral_scale``): multiplier 1."""
    return 1.0


LR_LAWS: dict[str, Callable[[Dims], float]] = {"sgd": _sgd_lr, "adam": _adam_lr, "spectral": _spectral_lr}
LR_CITATIONS = {"sgd": C_SGD, "adam": C_ADAM, "spectral": C_SPEC}


def gradient_size(d: Dims) -> float:
    """A gradient entry's size: η_SGD·g and η_Adam·sign(g) both meet Condition 2 on ΔW, so |g| ~
    η_Adam/η_SGD (hidden 1/d_out, readout Θ(1)); Adam's ε scales with it (docs/rules.md "Adam's ε")."""
    return _adam_lr(d) / _sgd_lr(d)


def snap(x: float) -> float:
    """Round a ratio within float noise of 1 to exactly 1.0 (so "keep" means untouched)."""
    return 1.0 if abs(x - 1.0) < 1e-12 else x


def _is_scalar_like(record: ParamRecord) -> bool:
    return record.role is Role.SCALAR or math.prod(record.shape) == 1


def _update_mode(record: ParamRecord) -> str:
    """SpectralSGD's treatment: sign for gains and scalars, column for sparse inputs, else orthogonal.

    A gain is diag(g): its spectral norm is max|g_i|, whose steepest-descent direction is sign(grad)
    (per-entry step lr: natural norm lr). A sparse-input operator (embedding, position table, class
    token, bias) is applied to one one-hot input at a time, so what it does to each input is one
    column: normalising each column of the gradient (steepest descent under the l1 -> RMS operator
    norm, the max column RMS) moves every input's vector by RMS lr whatever the gradient's rank.
    The polar factor would move each column by sqrt(rank / columns touched) instead, and the rank
    is capped by the width while the width is below the fixed vocabulary or context: measured on
    the GPT's position table (64 positions, widths 16-128, docs/rules.md §3) it grew like
    width^0.38. Both have natural spectral norm Theta(1) in width (the columns touched are a fixed
    count, docs/derivations.md §3), so Condition 2 holds either way. For a bias (one column) the two
    coincide: grad / RMS(grad).
    """
    if record.classified and (record.role is Role.GAIN or _is_scalar_like(record)):
        return "sign"
    if not record.classified and math.prod(record.shape) == 1:
        return "sign"
    if record.classified and record.input_space is Space.SPARSE:
        return "column"
    return "orthogonal"


def _spectral_scale(d: Dims, update: str) -> float:
    return 1.0 if update == "sign" else math.sqrt(d.d_out / d.d_in)


@dataclass(frozen=True)
class _Case:
    """One parameter under one optimizer family and the caller's choices: what every rule reads."""

    record: ParamRecord
    family: str
    form: str
    init: str
    zero_readout: Union[bool, str]
    init_gain: float
    library_ratio: Optional[float]
    dims: Dims
    base_dims: Optional[Dims]  # the same parameter at the base model's shapes (base form only)
    update: str

    @property
    def anchored(self) -> bool:
        return self.base_dims is not None


@dataclass(frozen=True)
class _Init:
    """The init part of a rule: ``kind`` with its std / spectral target / scale, and why."""

    kind: str
    std: Optional[float] = None
    target: Optional[float] = None
    scale: float = 1.0
    is_weight: bool = False  # a weight (not a bias, gain or scalar): the init choices apply to it
    cites: tuple[str, ...] = ()

    def but(self, cite: Optional[str] = None, **changes) -> "_Init":
        return replace(self, cites=self.cites + ((cite,) if cite else ()), **changes)


def rule_for(
    record: ParamRecord,
    optimizer: Any,
    *,
    form: str = "absolute",
    parametrization: str = "sptrace",
    init: str = "default",
    zero_readout: Union[bool, str] = False,
    init_gain: float = 1.0,
    library_ratio: Optional[float] = None,
) -> Rule:
    """The rule for one parameter.

    Args:
        record: the classified parameter.
        optimizer: family name, optimizer class or instance (:func:`optimizer_family`).
        form: ``"absolute"``, ``"base"`` or ``"reference"`` (anchored to ``record.base_shape``: the base
            model's shapes or the reference width's, docs/derivations.md §6).
        parametrization: ``"sptrace"`` (Parametrization 1 / μP, the default), ``"sp"``, ``"ntp"``.
        init: ``"default"`` (absolute: Gaussian; base: scale the library default by width ratios),
            ``"gaussian"``, ``"orthogonal"``, ``"spectral"`` (Eq. 16) — these three are sptrace's
            own absolute init even in base form — or ``"keep"`` (library default untouched).
        zero_readout: initialise readout weights (dense, width fan-in, fixed fan-out) to zero: ``True``,
            ``False``, or ``"auto"`` (zero, but a router, whose output reaches a top-k / argmax, near zero:
            planning/readouts.py).
        init_gain: Θ(1) prefactor on dense-input weight inits (sqrt(2) for ReLU, paper §4).
        library_ratio: std of the library init at the model shape over the base shape (base form,
            ``init="default"``); ``None`` = PyTorch's defaults (:func:`library_std_ratio`). For a
            bias, the ratio of the weight it is added to (:func:`sptrace.planning.plan.plan` pairs them).
    """
    family = optimizer_family(optimizer)
    check_parametrization(parametrization)
    check_form(form)
    if init not in INIT_CHOICES:
        raise SptraceError(f"init must be one of {INIT_CHOICES}, got {init!r}")
    check_zero_readout(zero_readout)
    if not record.classified:
        return _unclassified_rule(record, family, parametrization, form)
    case = _Case(
        record=record, family=family, form=form, init=init, zero_readout=zero_readout, init_gain=init_gain,
        library_ratio=library_ratio, dims=effective_dims(record),
        base_dims=effective_dims(record, at="base") if form in ANCHORED_FORMS else None,
        update=_update_mode(record),
    )
    return _RULES[parametrization](case)


def _rule(case: _Case, parametrization: str, init: _Init, *, lr_multiplier: float, weight_decay_multiplier: float,
          spectral_scale: float, cites: Sequence[str], eps_multiplier: float = 1.0) -> Rule:
    """A :class:`Rule` from its parts; Condition 2's target sqrt(d_out/d_in) (docs/derivations.md §1)."""
    target = math.sqrt(case.dims.d_out / case.dims.d_in)
    return Rule(
        optimizer=case.family, parametrization=parametrization, form=case.form, dims=case.dims,
        base_dims=case.base_dims, target_spectral_W=target, target_spectral_dW=target, init_kind=init.kind,
        init_std=init.std if init.kind == "gaussian" else None,
        init_target=init.target if init.kind in ("orthogonal", "spectral") else None, init_scale=init.scale,
        lr_multiplier=lr_multiplier, weight_decay_multiplier=weight_decay_multiplier,
        spectral_scale=spectral_scale, update=case.update, citation="; ".join(dict.fromkeys(cites)),
        eps_multiplier=eps_multiplier,
    )


def _unclassified_rule(record: ParamRecord, family: str, parametrization: str, form: str) -> Rule:
    """Library-default init and the plain lr: nothing is known to scale by."""
    unit = Dims(fan_in=1, fan_out=1, d_in=1, d_out=1, blocks=1, fan_in_w=1.0, fan_out_w=1.0,
                fan_in_width=False, fan_out_width=False, sparse_in=False)
    case = _Case(record=record, family=family, form=form, init="keep", zero_readout=False, init_gain=1.0,
                 library_ratio=None, dims=unit, base_dims=None, update=_update_mode(record))
    return _rule(case, parametrization, _Init("keep"), lr_multiplier=1.0, weight_decay_multiplier=1.0,
                 spectral_scale=1.0, cites=[f"{C_UNCL} ({record.problem or 'no problem recorded'})"])


def _per_width(case: _Case, factor: Callable[[Dims], float]) -> float:
    """``factor`` at the model's dims; in the base form divided by its value at the base's, so that
    only width ratios enter and every factor is exactly 1 at the base (docs/derivations.md §6)."""
    value = factor(case.dims)
    return value / factor(case.base_dims) if case.anchored else value


# --- sptrace's own: Parametrization 1 (μP) ---------------------------------------------------------
def _sptrace_rule(case: _Case) -> Rule:
    """Condition 2 for init and update (Parametrization 1, per optimizer family)."""
    init = _through_constant(case, _chosen_init(case, _init_by_role(case)))
    c = _constant(case)  # 1.0 unless a constant multiplies the output in the forward
    lr_multiplier = snap(_per_width(case, lambda d: lr_factor(case.family, d)) / c ** {"sgd": 2, "adam": 1}.get(case.family, 0))
    spectral_scale = (snap(_per_width(case, lambda d: _spectral_scale(d, case.update)) / c)
                      if case.family == "spectral" else 1.0)
    eps_multiplier = snap(_per_width(case, gradient_size) * c) if case.family == "adam" else 1.0  # g of c W: c g
    cites = ([C_COND, *init.cites, LR_CITATIONS[case.family], C_WD] + ([C_BASE] if case.anchored else [])
             + ([C_EPS] if case.family == "adam" else [])
             + ([C_CONST] if case.record.forward_constant is not None else []))
    return _rule(case, "sptrace", init, lr_multiplier=lr_multiplier, weight_decay_multiplier=1.0 / lr_multiplier,
                 spectral_scale=spectral_scale, cites=cites, eps_multiplier=eps_multiplier)


def _constant(case: _Case, absolute: bool = False) -> float:
    """n^p of a constant the forward multiplies the output by (docs/rules.md "Constants in the forward"),
    over its value at the base shape where anchored (unless ``absolute``); 1.0 without one."""
    found = case.record.forward_constant
    value = 1.0 if found is None else found.dependence(case.record.shape)
    return value if found is None or absolute or not case.anchored else snap(value / found.dependence(case.record.base_shape, True))


def _through_constant(case: _Case, init: _Init) -> _Init:
    """W's init such that c W has the rule's: an absolute std / target over c, a scale over its base ratio."""
    found = case.record.forward_constant
    if found is None or case.init == "keep" or init.kind == "zeros" or (found.in_init and init.kind == "keep"):
        return init  # in_init: the library's values already hold 1/c (ScaleNorm's g = sqrt(n), graph/l2norm.py)
    if init.kind in ("gaussian", "orthogonal", "spectral"):
        c = _constant(case, absolute=True)
        return init.but(C_CONST, std=init.std and init.std / c, target=init.target and init.target / c)
    scale = snap(init.scale / _constant(case))
    return init.but(C_CONST, kind="keep" if scale == 1.0 else "scale", scale=scale)


def _init_by_role(case: _Case) -> _Init:
    """Parametrization 1's init per role: weights Gaussian with sigma (docs/derivations.md §3 limits),
    biases zero (Appendix D), gains and scalars keep the library's width-free constant (§1)."""
    record, d = case.record, case.dims
    if record.role is Role.BIAS:
        return _Init("zeros", cites=(C_BIAS,))
    if record.role is Role.GAIN:
        # the library's value is a width-free constant (1 for norms, 1e-6 for ConvNeXt's layer
        # scale, 0 for ConvNeXt-V2's response norm): resetting it to 1 would change the model
        return _Init("keep", cites=(C_GAIN,))
    if _is_scalar_like(record):
        return _Init("keep", cites=(C_SCALAR,))
    dense_gain = 1.0 if d.sparse_in else case.init_gain
    return _Init("gaussian", std=gaussian_std(d) * dense_gain, target=init_spectral_target(d) * dense_gain,
                 is_weight=True, cites=(C_EMBED if d.sparse_in else C_SIGMA,))


def _chosen_init(case: _Case, by_role: _Init) -> _Init:
    """The caller's ``init=`` and ``zero_readout=`` applied to the role's init (planning/readouts.py)."""
    if case.init == "keep":
        return by_role.but(kind="keep")
    start = readout_start(case.record, case.zero_readout)
    if start == "zeros":
        return by_role.but(C_ZERO, kind="zeros")
    init = by_role
    if by_role.is_weight and case.init in ("orthogonal", "spectral"):
        why = "§4 semi-orthogonal init" if case.init == "orthogonal" else "Eq. 16 spectral normalisation"
        init = by_role.but(why, kind=case.init)
    elif case.anchored and case.init == "default":
        init = _anchored_init(case, by_role)
    return router_init(init) if start == "router" else init


def check_zero_readout(zero_readout) -> Union[bool, str]:
    if zero_readout not in (True, False, "auto"):
        raise SptraceError(f"zero_readout must be 'auto' (readouts start at zero, those that feed a top-k / "
                           f"argmax, e.g. a router, near zero), True or False, got {zero_readout!r}")
    return zero_readout


def _anchored_init(case: _Case, by_role: _Init) -> _Init:
    """Base form: the library default at the model's shape, times (rule std at model / rule std at
    base) / (library std at model / library std at base); "keep" where that is exactly 1."""
    library = library_std_ratio(case.record) if case.library_ratio is None else case.library_ratio
    scale = 1.0
    if by_role.is_weight:
        scale = snap(_per_width(case, gaussian_std) / library)
    elif case.record.role is Role.BIAS:
        # Appendix D: sigma_b = Θ(1). PyTorch's bias init is U(±1/sqrt(fan_in of the weight)),
        # which shrinks with width; undo that (plan() passes the paired weight's ratio; μP's
        # rescale_linear_bias does the same). Gains and scalars: width-free library values.
        scale = snap(1.0 / library)
    return by_role.but(C_BASE, kind="keep" if scale == 1.0 else "scale", scale=scale)


# --- the baselines: SP (§5.2) and NTP (§5.3) ---------------------------------------------------------
def _sp_rule(case: _Case) -> Rule:
    """SP (§5.2, Eq. 21): the library's init and one global lr."""
    return _rule(case, "sp", _Init("keep"), lr_multiplier=1.0, weight_decay_multiplier=1.0, spectral_scale=1.0,
                 cites=[C_SP])


def _ntp_rule(case: _Case) -> Rule:
    """NTP (§5.3, Eq. 22): W = W'/sqrt(fan_in), W' ~ N(0,1), one global lr on W'.

    Equivalent to sigma = 1/sqrt(fan_in) and eta = 1/fan_in for SGD on W (the multiplier scales the
    gradient by 1/sqrt(fan_in) too); for Adam (entrywise normalised, so only one factor) eta =
    1/sqrt(fan_in). The raw fan-in is used (Jacot et al.: n_{l-1} is the input size, one-hot or not).
    """
    if case.family == "spectral":
        raise SptraceError("NTP is defined for SGD and Adam only (Eq. 22); use parametrization='sp' to compare")

    def ntp_lr(d: Dims) -> float:
        return 1.0 / d.fan_in if case.family == "sgd" else 1.0 / math.sqrt(d.fan_in)

    cites = [C_NTP] + ([C_BASE] if case.anchored else [])
    return _rule(case, "ntp", _ntp_init(case), lr_multiplier=_per_width(case, ntp_lr), weight_decay_multiplier=1.0,
                 spectral_scale=1.0, cites=cites)


def _ntp_init(case: _Case) -> _Init:
    """sigma = init_gain/sqrt(fan_in) for weights (Appendix A: sqrt(2/n_{l-1}) for ReLU), zero biases, unit
    gains; in the base form the library
    default scaled to it ("keep" for everything else)."""
    record, d = case.record, case.dims
    if record.role is Role.BIAS:
        init = _Init("zeros")
    elif record.role is Role.GAIN:
        init = _Init("ones")
    elif _is_scalar_like(record):
        init = _Init("keep")
    else:
        init = _Init("gaussian", std=(1.0 if d.sparse_in else case.init_gain) / math.sqrt(d.fan_in))
    if case.init == "keep":
        init = init.but(kind="keep")
    if case.anchored and case.init == "default":
        if init.kind != "gaussian":
            return init.but(kind="keep")
        scale = snap((init.std * math.sqrt(case.base_dims.fan_in)) / library_std_ratio(record))
        return init.but(kind="keep" if scale == 1.0 else "scale", scale=scale)
    return init


_RULES: dict[str, Callable[[_Case], Rule]] = {"sptrace": _sptrace_rule, "sp": _sp_rule, "ntp": _ntp_rule}


def _use_dims(record: ParamRecord, use: ParamUse, shape) -> tuple[int, int]:
    fan_in = math.prod(shape[a] for a in use.fan_in_axes)
    fan_out = math.prod(shape[a] for a in use.fan_out_axes)
    d_in = 1 if use.input_space is Space.SPARSE else fan_in
    return d_in, fan_out


def forward_multiplier(record: ParamRecord, use: ParamUse, *, form: str = "absolute") -> float:
    """Forward multiplier for a secondary use of a tied tensor (docs/derivations.md §5).

    One tensor gets one init and one lr, set by its primary use. A secondary use whose target
    ``sqrt(d_out/d_in)`` differs needs the tensor multiplied by ``T_secondary / T_primary`` in that
    use. Only width enters (docs/derivations.md §3): absolute form evaluates the ratio with every fixed axis set
    to size 1 — for a tied embedding (primary: V -> n sparse, T = sqrt(n); readout: n -> V dense,
    T = sqrt(V/n)) that is 1/n = 1/fan_in of the readout use, μP's 1/width; base form divides
    the full ratio by its value at the base shapes: base_fan_in/fan_in (exactly 1 at the base).
    """
    width = set(record.width_dims)

    def target(u: ParamUse, shape) -> float:
        d_in, d_out = _use_dims(record, u, shape)
        return math.sqrt(d_out / d_in)

    primary = record.uses[0]

    def constants(shape, base: bool = False) -> float:
        # W is planned so that c W has the primary use's target; this use reads c_use W (its own
        # constant, T5's tied LM head's d^-1/2), so the multiplier is times c / c_use
        c, c_use = record.forward_constant, use.constant
        return ((1.0 if c is None else c.dependence(shape, base))
                / (1.0 if c_use is None else c_use.dependence(shape, base)))

    if check_form(form) in ANCHORED_FORMS:
        if record.base_shape is None:
            raise SptraceError(f"{record.name}: base form asked for, but the record has no base shape")
        now = target(use, record.shape) / target(primary, record.shape)
        then = target(use, record.base_shape) / target(primary, record.base_shape)
        return now / then * constants(record.shape) / constants(record.base_shape, True)
    width_only = tuple(s if a in width else 1 for a, s in enumerate(record.shape))
    return target(use, width_only) / target(primary, width_only) * constants(record.shape)

