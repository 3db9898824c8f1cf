"""IPython extension loaded into every python context of the code interpreter (paddock-interp, issue 16).

Adds the display formats E2B's code interpreter gives (its template/startup_scripts, written here anew):
``e2b/data`` for pandas DataFrames, ``e2b/chart`` for matplotlib figures (paddock_charts), ``application/json``
for plain dicts and lists, and PIL images shown or saved to a path appear as results instead of opening a viewer.
"""

import json
import os
import sys

from IPython.core.formatters import BaseFormatter, JSONFormatter
from traitlets import ObjectName, Unicode


class DataFrameFormatter(BaseFormatter):
    """A DataFrame as ``{column: [values]}`` (E2B's ``data``)."""

    format_type = Unicode("e2b/data")
    print_method = ObjectName("_repr_e2b_data_")
    _return_type = (dict, str)

    def __call__(self, obj):
        # Only when pandas is already imported: a DataFrame cannot exist otherwise, and importing it costs ~0.3 s.
        pandas = sys.modules.get("pandas")
        if pandas is None or not isinstance(obj, pandas.DataFrame):
            return super().__call__(obj)
        columns = obj.to_dict(orient="list")
        return {
            str(name): [_plain(v, pandas) for v in values] for name, values in columns.items()
        }


class ChartFormatter(BaseFormatter):
    """A matplotlib figure's chart: its type, axes and elements with their data (E2B's ``chart``)."""

    format_type = Unicode("e2b/chart")
    print_method = ObjectName("_repr_e2b_chart_")
    _return_type = (dict, str)

    def __call__(self, obj):
        if sys.modules.get("matplotlib") is None:
            return super().__call__(obj)
        from matplotlib.figure import Figure

        if not isinstance(obj, Figure):
            return super().__call__(obj)
        import paddock_charts

        try:
            return paddock_charts.figure_to_chart(obj)
        except Exception as error:  # a chart is extra: the PNG still goes out
            return {"type": "unknown", "title": None, "elements": [], "error": repr(error)}


class PlainJSONFormatter(JSONFormatter):
    """Plain dicts and lists as ``application/json`` too (E2B shows them so)."""

    def __call__(self, obj):
        if isinstance(obj, (dict, list)):
            try:
                return json.loads(json.dumps(obj, default=_json_default, allow_nan=False)), {"expanded": True}
            except (TypeError, ValueError):
                pass
        return super().__call__(obj)


def _json_default(value):
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.generic):
            return value.item()
        if isinstance(value, numpy.ndarray):
            return value.tolist()
    raise TypeError(f"not JSON: {type(value).__name__}")


def _plain(value, pandas):
    if isinstance(value, pandas.Timestamp):
        return value.isoformat()
    numpy = sys.modules.get("numpy")
    if numpy is not None and isinstance(value, numpy.generic):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None  # NaN is not JSON
    return value


def _patch_pil(ip):
    try:
        from PIL import Image, ImageShow
    except ImportError:
        return
    from IPython.display import display

    def show(image, title=None, **options):
        display(image)

    original_save = Image.Image.save

    def save(image, fp, format=None, **params):
        # Saving to a path shows the image as a result as well (E2B's 0003_images.py does the same).
        if isinstance(fp, (str, os.PathLike)):
            display(image)
        return original_save(image, fp, format, **params)

    Image.Image.show = show
    Image.Image.save = save
    ImageShow._viewers.clear()


def load_ipython_extension(ip):
    # The kernel imported this from PYTHONPATH; cells and their subprocesses should not inherit that.
    interp_python = os.path.dirname(os.path.abspath(__file__))
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != interp_python]
    if parts:
        os.environ["PYTHONPATH"] = os.pathsep.join(parts)
    else:
        os.environ.pop("PYTHONPATH", None)
    os.environ.pop("PADDOCK_INTERP_DIR", None)

    formatters = ip.display_formatter.formatters
    formatters["e2b/data"] = DataFrameFormatter(parent=ip.display_formatter)
    formatters["e2b/chart"] = ChartFormatter(parent=ip.display_formatter)
    formatters["application/json"] = PlainJSONFormatter(parent=ip.display_formatter)
    ip.display_formatter.active_types = list(ip.display_formatter.active_types) + ["e2b/data", "e2b/chart"]
    _patch_pil(ip)

    import paddock_charts

    paddock_charts.install_hooks()
