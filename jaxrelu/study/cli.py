"""The ``jaxrelu`` command line.

    jaxrelu reproduce [--quick] [--out DIR] [--data digits|PATH]
    jaxrelu volume [--dtypes ...] [--widths ...] [--depths ...] [--batch-sizes ...] [--inits N]
    jaxrelu train [--kink-grads ...] [--dtypes ...] [--optimizers ...] [--batchnorm ...] ...
    jaxrelu divergence [--dtypes ...] [--steps N] ...
    jaxrelu audit [--json PATH]
    jaxrelu --version

Every option's default is read from the study's config dataclasses. A bad argument, an
unsafe output path, data that cannot be used or a configuration that cannot fit in memory
gives one line on stderr and exit status 2, before any work starts. Ctrl-C stops at the
next step boundary, saves what is finished and exits with status 130.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
ONOFF = {"on": True, "off": False}
_SHAPE_OPTIONS = {"mlp": ("width", "depth"), "cnn": ("channels",), "resnet": ("depth", "channels")}
"""The ``train`` shape options each model uses."""


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage block
        raise _UsageError(f"{self.prog}: error: {message}")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: ...)`` for every option with a meaningful default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        skip = action.default is None or action.default is False
        if skip or action.default == argparse.SUPPRESS or "default" in help_text:
            return help_text
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{help_text} (default: {default})"


def _int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            v = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if v < lo or (hi is not None and v > hi):
            bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"{value} must be {bound}")
        return v

    return parse


_F32_MAX, _F32_TINY = 3.4028234663852886e38, 1.1754943508222875e-38  # (float32's range)


def _float(positive: bool = False, float32: bool = False) -> Callable[[str], float]:
    """A finite number (``positive``: above 0); ``float32``: one that float32 holds, a
    learning rate (1e308 overflowed in the training step, and every run diverged)."""

    def parse(value: str) -> float:
        try:
            v = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"{value!r} is not finite")
        if positive and v <= 0:
            raise argparse.ArgumentTypeError(f"{value!r} must be positive")
        if float32 and not (v == 0 or _F32_TINY <= abs(v) <= _F32_MAX):
            raise argparse.ArgumentTypeError(f"{value!r} is outside float32's range")
        return v

    return parse


def _kink_value(value: str) -> float | str:
    """A ``--kink-grads`` entry: a finite number or ``lexicographic``."""
    from .ties import LEXICOGRAPHIC

    if value == LEXICOGRAPHIC:
        return value
    try:
        return _float()(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is neither a finite number nor {LEXICOGRAPHIC!r}"
        ) from None


def _channel_set(value: str) -> tuple[int, ...]:
    """A ``--channels`` entry of ``jaxrelu collapse``: stage channels, comma-separated."""
    from . import limits

    parts = [p.strip() for p in value.split(",")]
    parse = _int_in(1, limits.MAX_CHANNELS)
    try:
        return tuple(parse(p) for p in parts)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{value!r}: {err} (e.g. 4,8)") from None


def _add_kink_grads(sp: argparse.ArgumentParser, default: list, note: str = "") -> None:
    from .ties import LEXICOGRAPHIC

    sp.add_argument(
        "--kink-grads",
        nargs="+",
        type=_kink_value,
        default=default,
        metavar="VALUE",
        help=f"values of ReLU'(0) trained in lockstep: numbers, or {LEXICOGRAPHIC!r}{note}",
    )


def _add_accumulate(sp: argparse.ArgumentParser) -> None:
    from .models import ACCUMULATE

    sp.add_argument(
        "--accumulate",
        nargs="+",
        choices=ACCUMULATE,
        default=[ACCUMULATE[0]],
        metavar="MODE",
        help="how 16-bit layers are rounded: 'native' (product and bias addition each "
        "rounded to the precision) or 'float32' (accumulated in float32, rounded once, as "
        "fused kernels and tensor cores do); one run per mode",
    )


def _version() -> str:
    import jax

    import jaxrelu

    return f"jaxrelu {jaxrelu.__version__} (JAX {jax.__version__})"


def _add_common(sp: argparse.ArgumentParser, json_help: str = "write the results as JSON") -> None:
    sp.add_argument(
        "--data",
        default="digits",
        help="'digits' (built in), 'synthetic', a directory of MNIST-format IDX files "
        "(raw or .gz) or an .npz with x_train, y_train, x_test, y_test",
    )
    sp.add_argument("--json", metavar="PATH", help=json_help + " (a new or regular file)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_dtypes(sp: argparse.ArgumentParser, default: list[str]) -> None:
    from .config import DTYPES

    sp.add_argument(
        "--dtypes",
        nargs="+",
        choices=DTYPES,
        default=default,
        metavar="DTYPE",
        help=f"precisions, from {', '.join(DTYPES)}",
    )


def _add_reproduce(sub) -> None:
    r = sub.add_parser(
        "reproduce",
        help="run the paper-mirroring set, write report.md, results.json and plots",
        description="Reproduce Bertoin et al. (NeurIPS 2021) on built-in or given data. "
        "Resumable: finished configurations saved in OUT/runs are reused when their data, "
        "versions and settings match; rerun the same command after an interruption.",
        formatter_class=_Formatter,
    )
    r.add_argument("--quick", action="store_true", help="a small version (about a minute)")
    r.add_argument("--out", default="jaxrelu-results", help="output directory")
    r.add_argument(
        "--data",
        default="digits",
        help="'digits' (built in), a directory of MNIST-format IDX files (raw or .gz) or an "
        ".npz with x_train, y_train, x_test, y_test",
    )
    r.add_argument("--no-progress", action="store_true", help="no stage counter or bars")


def _add_volume(sub) -> None:
    from . import limits
    from .experiments import VolumeConfig as V

    v = sub.add_parser(
        "volume",
        help="probability of the bifurcation zone",
        description="The paper's section 3 protocol over a sweep of settings: one row per "
        "combination of dtype, width, depth and batch size.",
        formatter_class=_Formatter,
    )
    _add_dtypes(v, ["float16", V.dtype, "float64"])
    v.add_argument(
        "--widths",
        nargs="+",
        type=_int_in(1, limits.MAX_WIDTH),
        default=[V.width],
        help="MLP hidden widths",
    )
    v.add_argument(
        "--depths",
        nargs="+",
        type=_int_in(1, limits.MAX_DEPTH),
        default=[V.depth],
        help="numbers of hidden layers",
    )
    v.add_argument(
        "--batch-sizes", nargs="+", type=_int_in(1), default=[V.batch_size], help="minibatch sizes"
    )
    v.add_argument(
        "--inits",
        type=_int_in(1, limits.MAX_INITS),
        default=V.inits,
        help="random initialisations per row",
    )
    v.add_argument(
        "--seed",
        type=_int_in(0, limits.MAX_SEED),
        default=V.seed,
        help="seed of the initialisations",
    )
    _add_accumulate(v)
    v.add_argument(
        "--images",
        type=_int_in(1),
        default=V.images,
        metavar="N",
        help="images seen per initialisation: successive passes over the training set, "
        "freshly shuffled after the first, a hit counted at the first minibatch that differs "
        "(e.g. 60000: as many as one pass over MNIST; default: one pass)",
    )
    _add_common(v)


def _add_train(sub) -> None:
    """The ``train`` subcommand: one ``add_argument`` per option, long only because the
    command has many options (defaults read from the config dataclasses)."""
    from . import limits
    from .config import DEFAULT_LEARNING_RATES, OPTIMIZERS
    from .config import NetworkConfig as N
    from .config import OptimConfig as O
    from .config import RunConfig as R
    from .models import INITS, MODELS

    t = sub.add_parser(
        "train",
        help="train with several ReLU'(0) values side by side",
        description="Section 4: accuracy by ReLU'(0), precision, batch norm, optimizer; one "
        "lockstep run of every --kink-grads value per combination.",
        formatter_class=_Formatter,
    )
    _add_kink_grads(
        t, [0.0, 1.0], " (each tie resolved by the lexicographic rule; MLP and residual CNN)"
    )
    _add_dtypes(t, [R.dtype])
    _add_accumulate(t)
    t.add_argument(
        "--optimizers", nargs="+", choices=OPTIMIZERS, default=[O.optimizer], help="optimizers"
    )
    t.add_argument(
        "--batchnorm",
        nargs="+",
        choices=list(ONOFF),
        default=["off"],
        help="batch norm before every activation",
    )
    t.add_argument(
        "--model",
        choices=list(MODELS),
        default=N.model,
        help="network: 'mlp', 'cnn' (convolutions and max pooling), 'resnet' (bias-free "
        "residual CNN)",
    )
    t.add_argument("--init", choices=INITS, default=N.init, help="initialisation")
    t.add_argument(
        "--epochs",
        type=_int_in(1, limits.MAX_EPOCHS),
        default=R.epochs,
        help="passes over the training set",
    )
    t.add_argument(
        "--seeds",
        nargs="+",
        type=_int_in(0, limits.MAX_SEED),
        default=[R.seed],
        help="seeds (one lockstep run each)",
    )
    t.add_argument(
        "--width",
        type=_int_in(1, limits.MAX_WIDTH),
        default=None,
        help=f"MLP hidden width (default: {N.width}; MLP only)",
    )
    t.add_argument(
        "--depth",
        type=_int_in(1, limits.MAX_DEPTH),
        default=None,
        help=f"MLP hidden layers; residual blocks per stage of the residual CNN (default: "
        f"{N.depth}; MLP and resnet)",
    )
    t.add_argument(
        "--channels",
        nargs="+",
        type=_int_in(1, limits.MAX_CHANNELS),
        default=None,
        help=f"CNN channels; residual CNN stage channels (default: "
        f"{' '.join(map(str, N.channels))}; cnn and resnet)",
    )
    t.add_argument("--batch-size", type=_int_in(1), default=O.batch_size, help="minibatch size")
    rates = ", ".join(f"{v:g} for {k}" for k, v in DEFAULT_LEARNING_RATES.items())
    t.add_argument(
        "--lr",
        type=_float(positive=True, float32=True),
        default=None,
        help=f"learning rate (default: {rates})",
    )
    _add_common(t)


def _add_divergence(sub) -> None:
    from . import limits
    from .experiments import DivergenceConfig as D

    d = sub.add_parser(
        "divergence",
        help="L1 distance between lockstep ReLU'(0)=0 and 1 runs",
        description="The introductory experiment: SGD from one initialisation with "
        "ReLU'(0) = 0 and = 1 on the same minibatches.",
        formatter_class=_Formatter,
    )
    _add_dtypes(d, ["float16", D.dtype, "float64"])
    d.add_argument("--steps", type=_int_in(1, 10**7), default=D.steps, help="SGD steps")
    d.add_argument(
        "--width", type=_int_in(1, limits.MAX_WIDTH), default=D.width, help="MLP hidden width"
    )
    d.add_argument(
        "--depth", type=_int_in(1, limits.MAX_DEPTH), default=D.depth, help="MLP hidden layers"
    )
    d.add_argument("--batch-size", type=_int_in(1), default=D.batch_size, help="minibatch size")
    d.add_argument("--seed", type=_int_in(0, limits.MAX_SEED), default=D.seed, help="seed")
    d.add_argument(
        "--lr",
        type=_float(positive=True, float32=True),
        default=D.learning_rate,
        help="learning rate",
    )
    d.add_argument(
        "--momentum",
        type=_float(),
        default=D.momentum,
        help="SGD momentum (0: plain SGD, as in the paper)",
    )
    _add_accumulate(d)
    _add_common(d)


def _add_collapse(sub) -> None:
    from . import limits
    from .collapse import KINK_GRADS
    from .collapse import CollapseConfig as C

    c = sub.add_parser(
        "collapse",
        help="the training collapse of a bias-free residual CNN, over depths and widths",
        description="Section 4's collapse: the bias-free residual CNN trained with every "
        "--kink-grads value in lockstep, for each precision, batch norm setting, depth, "
        "channel set and seed; reports accuracy, exact zeros, live ties and the gradient "
        "that flows through them, and where the effect of ReLU'(0) starts.",
        formatter_class=_Formatter,
    )
    _add_kink_grads(c, list(KINK_GRADS))
    _add_dtypes(c, [C.dtype])
    _add_accumulate(c)
    c.add_argument(
        "--batchnorm", nargs="+", choices=list(ONOFF), default=["off"], help="batch norm"
    )
    c.add_argument(
        "--depths",
        nargs="+",
        type=_int_in(1, limits.MAX_DEPTH),
        default=[C.depth],
        help="residual blocks per stage (two convolutions each)",
    )
    c.add_argument(
        "--channels",
        nargs="+",
        type=_channel_set,
        default=[C.channels],
        metavar="C1,C2,...",
        help="channel sets: each is the channels of the stages, comma-separated",
    )
    c.add_argument(
        "--seeds", nargs="+", type=_int_in(0, limits.MAX_SEED), default=[C.seed], help="seeds"
    )
    c.add_argument("--epochs", type=_int_in(1, limits.MAX_EPOCHS), default=C.epochs, help="epochs")
    c.add_argument(
        "--lr",
        type=_float(positive=True, float32=True),
        default=C.learning_rate,
        help="learning rate",
    )
    _add_common(c)


def build_parser() -> argparse.ArgumentParser:
    """The ``jaxrelu`` argument parser (every subcommand)."""
    p = _Parser(
        prog="jaxrelu",
        description="Nonsmooth derivatives in JAX: the ReLU'(0) study (Bertoin et al., "
        "NeurIPS 2021) and an audit of JAX's derivatives at kinks.",
        epilog="Run 'jaxrelu COMMAND --help' for a command's options and defaults.",
        formatter_class=_Formatter,
    )
    p.add_argument("--version", action="version", version=_version())
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    _add_reproduce(sub)
    _add_volume(sub)
    _add_train(sub)
    _add_divergence(sub)
    _add_collapse(sub)
    a = sub.add_parser(
        "audit",
        help="what JAX's AD returns at kinks (live, on this JAX)",
        description="For common nonsmooth expressions: the derivative JAX returns at each "
        "kink, the one-sided slopes, and whether it is in the Clarke interval.",
        formatter_class=_Formatter,
    )
    a.add_argument("--json", metavar="PATH", help="write the rows as JSON (a new or regular file)")
    return p


# --------------------------------------------------------------------------- helpers


def _fail(args: argparse.Namespace, err: Exception | str) -> _UsageError:
    return _UsageError(f"jaxrelu {args.command}: error: {err}")


def _json_path(args: argparse.Namespace) -> str | None:
    if getattr(args, "json", None) is None:
        return None
    from .outputs import check_output_file

    return check_output_file(args.json, "--json")


def _load(args: argparse.Namespace):
    from .data import load_data

    try:
        return load_data(args.data)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise _fail(args, f"--data: {err}") from err


def _collect(
    items: list, fn: Callable[[Any], list[dict]], desc: str, enabled: bool
) -> tuple[list[dict], bool]:
    """``fn(item)``'s rows for every item, with a progress bar; stops at Ctrl-C (raised at
    a step boundary) and returns ``(rows so far, interrupted)``."""
    from .interrupt import Interrupted
    from .progress import Progress

    rows: list[dict] = []
    bar = Progress(len(items), desc, "config", enabled)
    try:
        for item in items:
            rows += fn(item)
            bar.update()
    except Interrupted:
        return rows, True
    finally:
        bar.close()
    return rows, False


def _finish(
    args: argparse.Namespace, kind: str, table: str, rows: list[dict], config: dict, ds,
    interrupted: bool,
) -> int:  # fmt: skip
    """Prints the table and writes ``--json`` (the finished rows only, marked
    ``"interrupted": true``, after Ctrl-C); returns the exit status."""
    if rows:
        print(table)
    path = _json_path(args)
    if path is not None:
        from . import outputs

        extra = {"interrupted": True} if interrupted else {}
        doc = outputs.document(kind, rows, dataset=ds.describe(), config=config, **extra)
        outputs.atomic_write(path, outputs.dumps(doc))
        print(f"wrote {path}", file=sys.stderr)
    if interrupted:
        print(f"interrupted: {len(rows)} finished rows kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def _config(args: argparse.Namespace, **settled: Any) -> dict[str, Any]:
    skip = ("json", "no_progress", "command", "data")
    return {k: v for k, v in {**vars(args), **settled}.items() if k not in skip and v is not None}


# -------------------------------------------------------------------------- commands


def _cmd_volume(args: argparse.Namespace) -> int:
    from . import experiments, report

    _json_path(args)
    ds = _load(args)
    grid = [
        experiments.VolumeConfig(
            dt, w, d, b, args.inits, args.seed, accumulate=acc, images=args.images
        )
        for dt, acc, w, d, b in itertools.product(
            args.dtypes, args.accumulate, args.widths, args.depths, args.batch_sizes
        )
    ]
    for cfg in grid:  # every check before any work
        experiments.check_volume(cfg, ds)
    rows, stopped = _collect(
        grid,
        lambda cfg: [experiments.volume(**dataclasses.asdict(cfg), data=ds)],
        "volume",
        not args.no_progress,
    )
    return _finish(args, "volume", report.volume_rows_table(rows), rows, _config(args), ds, stopped)


def _train_configs(args: argparse.Namespace, ds) -> list:
    from .config import TrainConfig
    from .engine import preflight

    used = _SHAPE_OPTIONS[args.model]
    for name in ("width", "depth", "channels"):
        if getattr(args, name) is not None and name not in used:
            models = [m for m, opts in _SHAPE_OPTIONS.items() if name in opts]
            raise _fail(args, f"--{name} applies to --model {' and '.join(models)}")
    shape = {k: getattr(args, k) for k in ("width", "depth", "channels")}
    shape = {k: (tuple(v) if k == "channels" else v) for k, v in shape.items() if v is not None}
    configs = []
    grid = itertools.product(
        args.dtypes, args.accumulate, args.optimizers, args.batchnorm, args.seeds
    )
    for dt, acc, opt, bn, seed in grid:
        cfg = TrainConfig(
            model=args.model,
            init=args.init,
            dtype=dt,
            accumulate=acc,
            optimizer=opt,
            batchnorm=ONOFF[bn],
            seed=seed,
            epochs=args.epochs,
            batch_size=args.batch_size,
            kink_grads=tuple(args.kink_grads),
            learning_rate=args.lr,
            **shape,
        )
        preflight(cfg, ds)
        configs.append(cfg)
    return configs


def _cmd_train(args: argparse.Namespace) -> int:
    from . import experiments, report

    _json_path(args)
    ds = _load(args)
    configs = _train_configs(args, ds)

    def run(cfg):
        kw = {k: v for k, v in cfg.to_dict().items() if k != "kink_grads"}
        rows = experiments.train_comparison(
            kink_grads=cfg.kink_grads, data=ds, progress=not args.no_progress, **kw
        )
        return [{**r, "accumulate": cfg.accumulate} for r in rows]

    rows, stopped = _collect(configs, run, "train", False)  # each run has its own bar
    network = configs[0].network.to_dict()  # the fields this model uses, nothing else
    network.pop("batchnorm")
    config = {k: v for k, v in _config(args).items() if k not in (*network, "channels")}
    table = report.train_table(rows, style="text")
    return _finish(args, "train", table, rows, {**config, "network": network}, ds, stopped)


def _cmd_divergence(args: argparse.Namespace) -> int:
    from . import experiments, report
    from .engine import preflight

    _json_path(args)
    ds = _load(args)
    per_epoch = len(ds.y_train) // args.batch_size
    if per_epoch == 0:
        raise _fail(
            args,
            f"--batch-size {args.batch_size} is larger than the training set ({len(ds.y_train)})",
        )
    cfgs = [
        experiments.DivergenceConfig(
            dt,
            args.steps,
            args.width,
            args.depth,
            args.batch_size,
            args.seed,
            args.lr,
            args.momentum,
            accumulate=acc,
        )
        for dt, acc in itertools.product(args.dtypes, args.accumulate)
    ]
    for c in cfgs:
        preflight(c.train_config(per_epoch), ds)
    rows, stopped = _collect(
        cfgs,
        lambda c: [experiments.divergence(**dataclasses.asdict(c), data=ds)],
        "divergence",
        not args.no_progress,
    )
    table = report.divergence_table(rows, style="text")
    return _finish(args, "divergence", table, rows, _config(args), ds, stopped)


def _cmd_collapse(args: argparse.Namespace) -> int:
    from . import report
    from .collapse import CollapseConfig, collapse
    from .engine import preflight

    _json_path(args)
    ds = _load(args)
    cfgs = [
        CollapseConfig(
            dtype=dt, batchnorm=ONOFF[bn], seed=seed, epochs=args.epochs, channels=ch,
            depth=depth, learning_rate=args.lr, accumulate=acc,
            kink_grads=tuple(args.kink_grads),
        )
        for dt, acc, bn, depth, ch, seed in itertools.product(
            args.dtypes, args.accumulate, args.batchnorm, args.depths, args.channels, args.seeds
        )
    ]  # fmt: skip
    for c in cfgs:  # every configuration checked against the data before any training
        preflight(c.train_config(), ds)
    rows, stopped = _collect(
        cfgs,
        lambda c: collapse(data=ds, **dataclasses.asdict(c)),
        "collapse",
        not args.no_progress,
    )
    table = report.collapse_sweep_table(rows, style="text")
    return _finish(args, "collapse", table, rows, _config(args), ds, stopped)


def _summary(outcome) -> str:
    lines = ["", "jaxrelu reproduce: done. Output files:"]
    lines += [f"  report        {outcome.report}", f"  results       {outcome.results}"]
    lines += [f"  plot          {p}" for p in outcome.plots]
    lines.append(f"  saved runs    {outcome.runs_dir}{os.sep} ({outcome.saved_runs} files)")
    return "\n".join(lines)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from .outputs import check_output_dir
    from .plan import FULL, QUICK
    from .reproduce import output_names, reproduce

    plan = QUICK if args.quick else FULL
    ds = _load(args)  # (the data first: a bad --data leaves no --out directory behind)
    try:
        plan.check_data(ds)
    except ValueError as err:
        raise _fail(args, f"--data: {err}") from err
    try:
        out = check_output_dir(args.out, "--out", output_names(plan))
    except ValueError as err:
        raise _fail(args, err) from err
    print(
        f"jaxrelu reproduce{' --quick' if args.quick else ''}: data {ds.name}, writing to {out}",
        file=sys.stderr,
    )
    from .interrupt import Interrupted

    try:
        outcome = reproduce(out, ds, quick=args.quick, progress=not args.no_progress, plan=plan)
    except Interrupted:
        print(
            f"interrupted: finished configurations are saved in {os.path.join(out, 'runs')}; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    print(_summary(outcome))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    import jax

    import jaxrelu

    path = _json_path(args)
    audit = jaxrelu.audit_conventions()
    print(f"JAX {jax.__version__}: derivatives returned at kinks\n")
    print(audit)
    if path is not None:
        from . import outputs

        outputs.atomic_write(path, outputs.dumps(outputs.document("audit", audit.to_dicts())))
        print(f"wrote {path}", file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "volume": _cmd_volume,
    "train": _cmd_train,
    "divergence": _cmd_divergence,
    "collapse": _cmd_collapse,
    "reproduce": _cmd_reproduce,
    "audit": _cmd_audit,
}


def _run(parser: argparse.ArgumentParser, argv: Iterable[str] | None) -> int:
    args = parser.parse_args(None if argv is None else list(argv))
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    import jax

    # float64 is one of the study's precisions: enable 64-bit mode once, up front (every
    # array in the study has an explicit dtype, so nothing else changes).
    jax.config.update("jax_enable_x64", True)
    from .interrupt import Interrupted, deferred

    with deferred():
        try:
            return COMMANDS[args.command](args)
        except Interrupted:
            print("interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (ValueError, TypeError) as err:  # validation errors raised before any work
            raise _fail(args, err) from err


def main(argv: list[str] | None = None) -> int:
    """The console script: returns the exit status (0, 2 for usage errors, 130 for
    Ctrl-C)."""
    from .interrupt import Interrupted, check, deferred

    try:
        # the parser reads its defaults from the study's configs, which load JAX: a
        # KeyboardInterrupt inside that import can break it (an extension left half
        # initialised), so Ctrl-C there is held until it is done
        with deferred("interrupt: stopping once JAX has loaded"):
            parser = build_parser()
            check()
        return _run(parser, argv)
    except Interrupted:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _UsageError as err:
        print(str(err).splitlines()[0] if str(err) else "jaxrelu: error", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as err:  # a missing optional dependency, named with its extra
        print(f"jaxrelu: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C outside the deferred block (parsing, imports)
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
