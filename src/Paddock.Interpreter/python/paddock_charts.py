"""Matplotlib figures as E2B's chart objects (the ``chart`` of a result): written here from the shapes E2B's
SDK tests expect (js/tests/charts of e2b-dev/code-interpreter), not from E2B's own extractor.

One axes gives one chart; several give a ``superchart`` whose elements are the axes' charts. Supported: line,
scatter, bar, pie, box_and_whisker; anything else is ``unknown`` with no elements.
"""

import re
import sys

_UNIT = re.compile(r"[\(\[]([^\(\)\[\]]+)[\)\]]\s*$")


def install_hooks():
    """Remembers what Axes.boxplot returned on the axes: a box plot's statistics cannot be read back reliably
    from the lines it drew (patch_artist or not, notches, orientation)."""
    from matplotlib.axes import Axes

    if getattr(Axes.boxplot, "_paddock", False):
        return
    original = Axes.boxplot

    def boxplot(self, x, *args, **kwargs):
        artists = original(self, x, *args, **kwargs)
        labels = kwargs.get("labels") if kwargs.get("labels") is not None else kwargs.get("tick_labels")
        self._paddock_boxplot = (list(labels) if labels is not None else None, artists, kwargs.get("vert", True))
        return artists

    boxplot._paddock = True
    Axes.boxplot = boxplot


def figure_to_chart(figure):
    axes = [ax for ax in figure.get_axes() if ax.get_visible()]
    charts = [_axes_chart(ax) for ax in axes]
    if len(charts) == 1:
        return charts[0]
    title = figure._suptitle.get_text() if getattr(figure, "_suptitle", None) is not None else None
    return {"type": "superchart", "title": title or None, "elements": charts}


def _axes_chart(ax):
    from matplotlib.collections import PathCollection
    from matplotlib.container import BarContainer
    from matplotlib.patches import Wedge

    title = ax.get_title() or None
    if any(isinstance(p, Wedge) for p in ax.patches):
        return _pie(ax, title)
    if getattr(ax, "_paddock_boxplot", None) is not None:
        return _box(ax, title)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    if bars:
        return _bar(ax, title, bars)
    scatters = [c for c in ax.collections if isinstance(c, PathCollection) and len(c.get_offsets()) > 0]
    if scatters:
        return _scatter(ax, title, scatters)
    if ax.lines:
        return _line(ax, title)
    return {"type": "unknown", "title": title, "elements": []}


def _label(artist):
    label = artist.get_label()
    return None if label is None or str(label).startswith("_") else str(label)


def _number(value):
    value = float(value)
    return None if value != value else value


def _is_date_axis(axis):
    formatter = axis.get_major_formatter()
    return type(formatter).__module__ == "matplotlib.dates"


def _x_value(axis, value):
    if _is_date_axis(axis):
        from matplotlib.dates import num2date

        return num2date(float(value)).isoformat()
    return _number(value)


def _axis(ax, which):
    axis = ax.xaxis if which == "x" else ax.yaxis
    label = axis.get_label().get_text() or None
    unit = None
    if label:
        match = _UNIT.search(label)
        unit = match.group(1).strip() if match else None
    ticks = list(axis.get_majorticklocs())
    formatter = axis.get_major_formatter()
    try:
        tick_labels = [str(t) for t in formatter.format_ticks(ticks)]
    except Exception:
        tick_labels = [str(t) for t in ticks]
    if _is_date_axis(axis):
        scale = "datetime"
        tick_values = [_x_value(axis, t) for t in ticks]
    elif type(formatter).__name__ == "StrCategoryFormatter":
        scale = "categorical"
        tick_values = [_number(t) for t in ticks]
    else:
        scale = ax.get_xscale() if which == "x" else ax.get_yscale()
        tick_values = [_number(t) for t in ticks]
    return {
        f"{which}_label": label,
        f"{which}_unit": unit,
        f"{which}_ticks": tick_values,
        f"{which}_tick_labels": tick_labels,
        f"{which}_scale": scale,
    }


def _two_d(ax, kind, title, elements):
    chart = {"type": kind, "title": title}
    chart.update(_axis(ax, "x"))
    chart.update(_axis(ax, "y"))
    chart["elements"] = elements
    return chart


def _line(ax, title):
    elements = []
    for line in ax.lines:
        xs, ys = line.get_xdata(orig=False), line.get_ydata(orig=False)
        points = [[_x_value(ax.xaxis, x), _number(y)] for x, y in zip(xs, ys)]
        elements.append({"label": _label(line), "points": points})
    return _two_d(ax, "line", title, elements)


def _scatter(ax, title, collections):
    elements = []
    for collection in collections:
        points = [[_x_value(ax.xaxis, x), _number(y)] for x, y in collection.get_offsets()]
        elements.append({"label": _label(collection), "points": points})
    return _two_d(ax, "scatter", title, elements)


def _bar(ax, title, containers):
    formatter = ax.xaxis.get_major_formatter()
    elements = []
    for container in containers:
        group = _label(container)
        for patch in container.patches:
            center = patch.get_x() + patch.get_width() / 2
            try:
                label = str(formatter(center))
            except Exception:
                label = str(center)
            elements.append({"label": label, "group": group, "value": _number(patch.get_height())})
    return _two_d(ax, "bar", title, elements)


def _pie(ax, title):
    from matplotlib.patches import Wedge

    texts = [t.get_text() for t in ax.texts]
    elements = []
    for wedge in (p for p in ax.patches if isinstance(p, Wedge)):
        # theta1/theta2 come from float sums (90% of 360 is 323.999991 here); E2B's charts give whole degrees as such.
        angle = round(abs(wedge.theta2 - wedge.theta1), 4)
        elements.append({"label": _label(wedge), "angle": angle, "radius": _number(wedge.r)})
    return {"type": "pie", "title": title, "elements": elements}


def _box(ax, title):
    labels, artists, vertical = ax._paddock_boxplot
    value = (lambda line: line.get_ydata()) if vertical else (lambda line: line.get_xdata())
    elements = []
    for i, box in enumerate(artists["boxes"]):
        if hasattr(box, "get_path"):
            vertices = box.get_path().vertices
            values = vertices[:, 1] if vertical else vertices[:, 0]
        else:
            values = value(box)
        caps = artists["caps"][2 * i: 2 * i + 2]
        cap_values = [float(value(c)[0]) for c in caps]
        median = value(artists["medians"][i])
        fliers = artists["fliers"][i] if i < len(artists["fliers"]) else None
        elements.append({
            "label": str(labels[i]) if labels is not None and i < len(labels) else str(i + 1),
            "min": _number(min(cap_values)) if cap_values else None,
            "first_quartile": _number(min(values)),
            "median": _number(median[0]),
            "third_quartile": _number(max(values)),
            "max": _number(max(cap_values)) if cap_values else None,
            "outliers": [_number(v) for v in value(fliers)] if fliers is not None else [],
        })
    return _two_d(ax, "box_and_whisker", title, elements)
