"""The evaluation report: ``report.json`` (everything), ``report.md`` (one table) and PNG plots.

``results`` maps system -> metric -> value; ``targets`` maps metric -> (op, value) with op ``"<="`` or
``">="``. A target applies to every system that reports the metric; name a metric per system (e.g.
``joint_rtf``) when a target concerns one system only.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Results = Mapping[str, Mapping[str, float]]
Targets = Mapping[str, tuple[str, float]]
Series = Mapping[str, Mapping[str, Sequence[float]]]

_OPS = ("<=", ">=")


def passes(value: float, op: str, target: float) -> bool | None:
    """Whether ``value`` meets ``op target``; None when the value is missing or not finite."""
    if op not in _OPS:
        raise ValueError(f"target operator must be '<=' or '>=', got {op!r}")
    if value is None or not math.isfinite(value):
        return None
    return value <= target if op == "<=" else value >= target


def _metrics(results: Results, targets: Targets) -> list[str]:
    """Metric names in first-seen order over the systems, then target-only metrics."""
    names: dict[str, None] = {}
    for values in results.values():
        names.update(dict.fromkeys(values))
    names.update(dict.fromkeys(targets))
    return list(names)


def _format(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.4g}"


def render_markdown(results: Results, targets: Targets, title: str = "Evaluation") -> str:
    """The report table as Markdown: metrics as rows, a target column, then one column per system; a
    value meeting its target is marked ✅, one missing it ❌."""
    for metric, (op, _) in targets.items():
        if op not in _OPS:
            raise ValueError(f"target for {metric!r} has operator {op!r}; use '<=' or '>='")
    systems = list(results)
    lines = [
        f"# {title}",
        "",
        "| metric | target | " + " | ".join(systems) + " |",
        "|---|---|" + "---:|" * len(systems),
    ]
    for metric in _metrics(results, targets):
        target = targets.get(metric)
        cells = [metric, f"{target[0]} {target[1]:g}" if target else ""]
        for system in systems:
            value = results[system].get(metric)
            if value is None:
                cells.append("—")
                continue
            text = _format(float(value))
            if target is not None:
                ok = passes(float(value), *target)
                text += "" if ok is None else (" ✅" if ok else " ❌")
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "✅ meets the target, ❌ misses it, — not measured, n/a undefined (e.g. no audio beats)."]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN and infinities become null (strict JSON has no NaN)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write a {type(value).__name__} to report.json; pass numbers, strings or lists")


def write_report(
    results: Results,
    targets: Targets,
    out_dir: Path,
    details: Mapping[str, object] | None = None,
    curves: Series | None = None,
    per_clip: Series | None = None,
    title: str = "Evaluation",
) -> list[Path]:
    """Write the report into ``out_dir`` and return the files written.

    - ``report.json``: systems, metrics, results, targets, pass/fail per system and metric, ``details``
      (free-form: data sizes, commands, hardware), ``curves`` and ``per_clip``.
    - ``report.md``: ``render_markdown`` plus links to the plots.
    - ``metrics.png``: one bar subplot per metric comparing systems, targets as dashed lines.
    - ``curves.png`` (if ``curves``): name -> series label -> y values, one line subplot per name (e.g.
      loss per step, a metric against Euler steps).
    - ``per_clip.png`` (if ``per_clip``): metric -> system -> per-clip values, one box plot per metric
      with the clips as points, to show spread and outliers behind each mean.

    Plots need matplotlib (``pip install 'dyad[train]'``); the JSON and Markdown are written first.
    Blocking file I/O: call it from a worker thread inside async code.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(results, targets, title)
    metrics = _metrics(results, targets)
    verdicts = {
        system: {
            metric: passes(float(values[metric]), *targets[metric])
            for metric in metrics
            if metric in targets and metric in values
        }
        for system, values in results.items()
    }
    document = {
        "systems": list(results),
        "metrics": metrics,
        "results": results,
        "targets": {metric: {"op": op, "value": value} for metric, (op, value) in targets.items()},
        "pass": verdicts,
        "details": details or {},
        "curves": curves or {},
        "per_clip": per_clip or {},
    }
    json_path = out / "report.json"
    json_path.write_text(json.dumps(_jsonable(document), indent=2, ensure_ascii=False) + "\n")

    plots = [out / "metrics.png"]
    if curves:
        plots.append(out / "curves.png")
    if per_clip:
        plots.append(out / "per_clip.png")
    links = "\n".join(f"![{p.stem}]({p.name})" for p in plots)
    md_path = out / "report.md"
    md_path.write_text(markdown + "\nFull results and per-clip values: `report.json`.\n\n" + links + "\n")

    _plot_bars(results, targets, metrics, plots[0])
    if curves:
        _plot_curves(curves, out / "curves.png")
    if per_clip:
        _plot_per_clip(per_clip, targets, out / "per_clip.png")
    return [json_path, md_path, *plots]


# --------------------------------------------------------------------------------------------------
# Plots (matplotlib's object API: no pyplot global state, safe in worker threads)
# --------------------------------------------------------------------------------------------------


def _figure(panels: int, width: float = 3.4, height: float = 2.8) -> tuple[Any, list[Any]]:
    try:
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - matplotlib is in the train extra
        raise RuntimeError("plots need matplotlib: pip install 'dyad[train]'") from error
    columns = min(4, max(1, panels))
    rows = math.ceil(max(1, panels) / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return figure, axes[:panels]


def _colours(count: int) -> list[Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return [palette(i % 10) for i in range(count)]


def _plot_bars(results: Results, targets: Targets, metrics: list[str], path: Path) -> None:
    systems = list(results)
    colours = _colours(len(systems))
    figure, axes = _figure(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        raw = [results[s].get(metric) for s in systems]
        values = [math.nan if v is None else float(v) for v in raw]
        heights = [v if math.isfinite(v) else 0.0 for v in values]
        bars = ax.bar(range(len(systems)), heights, color=colours)
        for bar, value, given in zip(bars, values, raw, strict=True):
            ax.annotate(
                "—" if given is None else _format(value),
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        if metric in targets:
            op, target = targets[metric]
            ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {op} {target:g}")
            ax.legend(fontsize=7, loc="best")
        ax.set_xticks(range(len(systems)), systems, rotation=20, fontsize=8)
        ax.set_title(metric, fontsize=10)
        ax.margins(y=0.15)
    figure.savefig(path, dpi=110)


def _plot_curves(curves: Series, path: Path) -> None:
    figure, axes = _figure(len(curves), width=4.2)
    for ax, (name, series) in zip(axes, curves.items(), strict=True):
        for label, values in series.items():
            ax.plot(np.arange(len(values)), np.asarray(values, dtype=np.float64), label=label, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    figure.savefig(path, dpi=110)


def _plot_per_clip(per_clip: Series, targets: Targets, path: Path) -> None:
    figure, axes = _figure(len(per_clip), width=3.8)
    rng = np.random.default_rng(0)  # fixed jitter: the same data gives the same picture
    for ax, (metric, by_system) in zip(axes, per_clip.items(), strict=True):
        systems = list(by_system)
        data = [np.asarray(by_system[s], dtype=np.float64) for s in systems]
        data = [d[np.isfinite(d)] for d in data]
        colours = _colours(len(systems))
        ax.boxplot(data, positions=range(len(systems)), widths=0.5, showfliers=False)
        for x, (values, colour) in enumerate(zip(data, colours, strict=True)):
            jitter = rng.uniform(-0.15, 0.15, values.size)
            ax.scatter(x + jitter, values, s=8, alpha=0.6, color=colour)
        if metric in targets:
            op, target = targets[metric]
            ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {op} {target:g}")
            ax.legend(fontsize=7, loc="best")
        ax.set_xticks(range(len(systems)), [f"{s}\n(n={d.size})" for s, d in zip(systems, data, strict=True)])
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(f"{metric} per clip", fontsize=10)
    figure.savefig(path, dpi=110)
