"""`hub report --plot`: the service chain and the step durations as a picture (matplotlib, optional extra `report`)."""

from __future__ import annotations

from pathlib import Path

from hub.reporting.indicators import STEPS, Indicators


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed, or cannot write the file's format."""


def title(ind: Indicators) -> str:
    """The picture's title: the municipality (code and name) and the period, so a copy stands on its own."""
    try:
        from hub.routing.reference import default_reference

        name = default_reference().municipalities[ind.municipality].name_fi
    except (KeyError, AttributeError):
        name = None
    where = f"{ind.municipality} {name}" if name else ind.municipality
    return (f"Municipality {where}: newcomers registered {ind.period_from.isoformat()} – {ind.period_to.isoformat()} "
            f"(states as of {ind.as_of.isoformat()})")


def plot(ind: Indicators, path: str | Path) -> Path:
    """Draw the service chain (left) and the median / 90th-percentile days between the steps (right) into `path`.

    The file's suffix gives the format; one matplotlib cannot write is refused before anything is drawn."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise PlotUnavailable("--plot needs matplotlib: pip install 'integration-hub[report]' (or pip install matplotlib)") from None
    path = Path(path)
    formats = FigureCanvasBase.get_supported_filetypes()
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise PlotUnavailable(f"cannot write {path}: matplotlib writes {', '.join('.' + f for f in sorted(formats))}; give the file one of these suffixes")

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    labels, values = zip(*ind.funnel())
    bars = left.barh(labels[::-1], values[::-1], color="#3c6e9f")
    left.bar_label(bars, padding=3)
    left.set_title("Service chain (681/2023): persons at the step or further")
    left.set_xlabel("persons")
    left.set_xlim(0, max(max(values), 1) * 1.15)

    names = [title for key, title in STEPS]
    medians = [ind.steps[key].median_days or 0 for key, _ in STEPS]
    p90s = [ind.steps[key].p90_days or 0 for key, _ in STEPS]
    counts = [ind.steps[key].n for key, _ in STEPS]
    ys = range(len(names))
    right.barh([y + 0.2 for y in ys], medians, height=0.4, label="median", color="#3c6e9f")
    right.barh([y - 0.2 for y in ys], p90s, height=0.4, label="90th percentile", color="#e0a030")
    right.set_yticks(list(ys), [f"{n}\n(n={c})" for n, c in zip(names, counts)])
    right.invert_yaxis()
    right.set_xlabel("days")
    right.set_title("Days between the steps")
    right.legend(loc="lower right")

    fig.suptitle(title(ind))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
