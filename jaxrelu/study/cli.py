"""The ``jaxrelu`` command line.

    jaxrelu reproduce [--quick] [--out DIR] [--data digits|PATH]
    jaxrelu volume [--dtypes ...] [--widths ...] [--depths ...] [--batch-sizes ...] [--inits N]
    jaxrelu train [--kink-grads ...] [--dtypes ...] [--optimizers ...] [--batchnorm ...] ...
    jaxrelu divergence [--dtypes ...] [--steps N] ...
    jaxrelu audit [--json PATH]

A bad argument gives one line on stderr and exit status 2, before any work starts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


DTYPE_NAMES = ("float16", "bfloat16", "float32", "float64")


def _dtype(value: str) -> str:
    if value not in DTYPE_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown dtype {value!r} (choose from {', '.join(DTYPE_NAMES)})"
        )
    return value


def _int_at_least(lowest: int, what: str):
    def parse(value: str) -> int:
        try:
            v = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
        if v < lowest:
            raise argparse.ArgumentTypeError(f"{value!r} must be {what}")
        return v

    return parse


_positive = _int_at_least(1, "positive")
_nonneg_int = _int_at_least(0, ">= 0")


def _float(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{value!r} is not finite")
    return v


def _positive_float(value: str) -> float:
    v = _float(value)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be positive")
    return v


def _onoff(value: str) -> bool:
    v = value.lower()
    if v in ("on", "true", "yes", "1"):
        return True
    if v in ("off", "false", "no", "0"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not on/off")


def _build() -> _Parser:
    p = _Parser(prog="jaxrelu", description="Nonsmooth derivatives in JAX: the ReLU'(0) study.")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    sub.required = True

    def common(sp, data=True):
        if data:
            sp.add_argument(
                "--data",
                default="digits",
                help="'digits' (built in), 'synthetic', an MNIST IDX directory or .npz",
            )
        sp.add_argument("--json", metavar="PATH", help="write the results as JSON")
        sp.add_argument("--no-progress", action="store_true", help="no progress bars")

    r = sub.add_parser(
        "reproduce",
        help="run the paper-mirroring set, write report.md + plots",
        description="Reproduce Bertoin et al. (NeurIPS 2021) on built-in data. "
        "Resumable: finished configurations in --out are skipped.",
    )
    r.add_argument("--quick", action="store_true", help="a small version (about a minute)")
    r.add_argument("--out", default="jaxrelu-results", help="output directory")
    r.add_argument("--data", default="digits", help="'digits' or an MNIST-format path")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")

    v = sub.add_parser(
        "volume",
        help="probability of the bifurcation zone",
        description="The paper's section 3 protocol over a sweep of settings.",
    )
    v.add_argument("--dtypes", nargs="+", type=_dtype, default=["float16", "float32", "float64"])
    v.add_argument("--widths", nargs="+", type=_positive, default=[256])
    v.add_argument("--depths", nargs="+", type=_positive, default=[3])
    v.add_argument("--batch-sizes", nargs="+", type=_positive, default=[128])
    v.add_argument("--inits", type=_positive, default=100)
    v.add_argument("--seed", type=_nonneg_int, default=0)
    common(v)

    t = sub.add_parser(
        "train",
        help="train with several ReLU'(0) values side by side",
        description="Section 4: accuracy by ReLU'(0), precision, batch norm, optimizer.",
    )
    t.add_argument("--kink-grads", nargs="+", type=_float, default=[0.0, 1.0])
    t.add_argument("--dtypes", nargs="+", type=_dtype, default=["float32"])
    t.add_argument("--optimizers", nargs="+", choices=["sgd", "adam"], default=["sgd"])
    t.add_argument("--batchnorm", nargs="+", type=_onoff, default=[False], metavar="on|off")
    t.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    t.add_argument("--epochs", type=_positive, default=10)
    t.add_argument("--seeds", nargs="+", type=_nonneg_int, default=[0])
    t.add_argument("--width", type=_positive, default=256)
    t.add_argument("--depth", type=_positive, default=2)
    t.add_argument("--batch-size", type=_positive, default=128)
    t.add_argument("--lr", type=_positive_float, default=None, help="default: 0.1 SGD, 1e-3 Adam")
    common(t)

    d = sub.add_parser(
        "divergence",
        help="L1 distance between lockstep ReLU'(0)=0 and 1 runs",
        description="The introductory experiment: plain SGD from one initialisation.",
    )
    d.add_argument("--dtypes", nargs="+", type=_dtype, default=["float16", "float32", "float64"])
    d.add_argument("--steps", type=_positive, default=100)
    d.add_argument("--width", type=_positive, default=256)
    d.add_argument("--depth", type=_positive, default=2)
    d.add_argument("--batch-size", type=_positive, default=128)
    d.add_argument("--seed", type=_nonneg_int, default=0)
    d.add_argument("--lr", type=_positive_float, default=0.1)
    common(d)

    a = sub.add_parser(
        "audit",
        help="what JAX's AD returns at kinks (live, on this JAX)",
        description="For common nonsmooth expressions: the derivative JAX returns at each "
        "kink, the one-sided slopes, and whether it is in the Clarke interval.",
    )
    a.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    return p


def _load(spec: str):
    from .data import load_data

    try:
        return load_data(spec)
    except (FileNotFoundError, ValueError, TypeError) as err:
        raise _UsageError(f"jaxrelu: error: --data: {err}") from err


def _check_json_path(path: str | None) -> None:
    if path is None:
        return
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise _UsageError(
            f"jaxrelu: error: --json: cannot write {path!r} (no such writable directory)"
        )


def _write_json(path: str | None, data_name: str, config: dict, rows: list[dict]) -> None:
    if path is None:
        return
    from .. import __version__
    from .report import _json_default, atomic_write

    doc = {"jaxrelu_version": __version__, "dataset": data_name, "config": config, "results": rows}
    atomic_write(path, json.dumps(doc, indent=1, default=_json_default))
    print(f"wrote {path}", file=sys.stderr)


def _table(rows: list[dict], cols: list[str]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, list):
            return "[" + ", ".join(cell(x) for x in v) + "]"
        return str(v)

    body = [[cell(r.get(c)) for c in cols] for r in rows]
    w = [max(len(x) for x in [c, *[b[i] for b in body]]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(cols))]
    lines += ["  ".join(x.ljust(w[i]) for i, x in enumerate(b)) for b in body]
    return "\n".join(lines)


def _iter(items, desc, enabled):
    from .progress import Progress

    bar = Progress(len(items), desc, "config", enabled)
    try:
        for item in items:
            yield item
            bar.update()
    finally:
        bar.close()


def _data_for(args, flag: str, sizes: list[int]):
    """Checks --json, loads --data and checks the batch sizes against it (before work)."""
    _check_json_path(args.json)
    ds = _load(args.data)
    too_big = [b for b in sizes if b > len(ds.y_train)]
    if too_big:
        raise _UsageError(
            f"jaxrelu {args.command}: error: {flag} {too_big[0]} is larger than the "
            f"training set ({len(ds.y_train)})"
        )
    return ds


def _finish(args, ds, rows: list[dict], cols: list[str]) -> int:
    print(_table(rows, cols))
    _write_json(args.json, ds.name, {"command": args.command, **_conf(args)}, rows)
    return 0


def _cmd_volume(args) -> int:
    from . import experiments as study

    ds = _data_for(args, "--batch-sizes", args.batch_sizes)
    jobs = [
        (dt, w, d, b)
        for dt in args.dtypes
        for w in args.widths
        for d in args.depths
        for b in args.batch_sizes
    ]
    rows = [
        study.volume(dt, w, d, b, args.inits, args.seed, ds)
        for dt, w, d, b in _iter(jobs, "volume", not args.no_progress)
    ]
    cols = ["dtype", "width", "depth", "batch_size", "inits", "in_zone", "probability", "ci"]
    return _finish(args, ds, rows, [*cols, "minibatch_rate", "relative_l2", "seconds"])


def _cmd_train(args) -> int:
    from . import experiments as study

    ds = _data_for(args, "--batch-size", [args.batch_size])
    extra: dict[str, Any] = {"batch_size": args.batch_size}
    if args.model == "mlp":
        extra.update(width=args.width, depth=args.depth)
    if args.lr is not None:
        extra["learning_rate"] = args.lr
    rows = []
    for dt in args.dtypes:
        for opt in args.optimizers:
            for bn in args.batchnorm:
                for seed in args.seeds:
                    rows += study.train_comparison(
                        tuple(args.kink_grads),
                        dt,
                        opt,
                        bn,
                        seed,
                        args.model,
                        args.epochs,
                        ds,
                        progress=not args.no_progress,
                        **extra,
                    )
    cols = ["model", "kink_grad", "dtype", "optimizer", "batchnorm", "seed", "status"]
    return _finish(args, ds, rows, [*cols, "test_accuracy", "zero_hits", "bifurcation_steps"])


def _cmd_divergence(args) -> int:
    from . import experiments as study

    ds = _data_for(args, "--batch-size", [args.batch_size])
    rows = [
        study.divergence(
            dt, args.steps, args.width, args.depth, args.batch_size, args.seed, args.lr, ds
        )
        for dt in _iter(args.dtypes, "divergence", not args.no_progress)
    ]
    for r in rows:
        r["l1_final"] = r["l1"][-1]
    return _finish(args, ds, rows, ["dtype", "steps", "first_divergence", "l1_final"])


def _cmd_reproduce(args) -> int:
    from .report import check_writable, reproduce

    try:
        check_writable(args.out)
    except ValueError as err:
        raise _UsageError(f"jaxrelu reproduce: error: {err}") from err
    ds = _load(args.data)
    print(
        f"jaxrelu reproduce{' --quick' if args.quick else ''}: data {ds.name}, "
        f"writing to {args.out}",
        file=sys.stderr,
    )
    try:
        reproduce(args.out, ds, quick=args.quick, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished configurations are saved in {args.out}/runs; rerun the same "
            "command to resume",
            file=sys.stderr,
        )
        return 130
    print(f"\nreport: {os.path.join(args.out, 'report.md')}", file=sys.stderr)
    return 0


def _cmd_audit(args) -> int:
    from ..kinks import audit_conventions

    _check_json_path(args.json)
    audit = audit_conventions()
    import jax

    print(f"JAX {jax.__version__}: derivatives returned at kinks\n")
    print(audit)
    if args.json:
        from .report import atomic_write

        atomic_write(
            args.json,
            json.dumps({"jax_version": jax.__version__, "rows": audit.to_dicts()}, indent=1),
        )
    return 0


def _conf(args) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("json", "no_progress", "command")}


def main(argv: list[str] | None = None) -> int:
    parser = _build()
    try:
        args = parser.parse_args(argv)
        import jax

        # float64 is one of the study's precisions: enable 64-bit mode once, up front (every
        # array in jaxrelu has an explicit dtype, so nothing else changes).
        jax.config.update("jax_enable_x64", True)
        handler = {
            "volume": _cmd_volume,
            "train": _cmd_train,
            "divergence": _cmd_divergence,
            "reproduce": _cmd_reproduce,
            "audit": _cmd_audit,
        }[args.command]
        return handler(args)
    except _UsageError as err:
        print(str(err), file=sys.stderr)
        return EXIT_USAGE
    except ImportError as err:  # a missing optional dependency, named with its extra
        print(f"jaxrelu: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
