"""WidgetBar: the one progress widget of ``%agent bench`` (Progress) and ``%agent batch``."""

from __future__ import annotations

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from claude_force_magic.notebook.widgets import WIDGET_VIEW, WidgetBar


def test_a_widget_bar_shows_its_text_form_and_ends_with_the_one_it_is_given() -> None:
    InteractiveShell.instance()
    bar = WidgetBar()
    with capture_output() as out:
        assert bar.open(12, "<b>job</b>: starting", "job: starting", as_html=True)
        bar.bar.value = 12
        bar.finish("warning", "job: ended, 12/12 (11 succeeded, 1 errored)")
    first, last = (o.data for o in out.outputs)
    assert first["text/plain"] == "job: starting" and WIDGET_VIEW in first
    assert last["text/plain"] == "job: ended, 12/12 (11 succeeded, 1 errored)"
    assert first[WIDGET_VIEW]["model_id"] == last[WIDGET_VIEW]["model_id"]  # one display
    assert type(bar.text).__name__ == "HTML" and bar.text.value == "<b>job</b>: starting"
    assert (bar.bar.max, bar.bar.bar_style) == (12, "warning")


def test_a_label_bar_carries_its_description() -> None:
    InteractiveShell.instance()
    bar = WidgetBar()
    with capture_output():
        assert bar.open(3, "0/3", "bench: 0/3", description="bench")
    assert type(bar.text).__name__ == "Label" and bar.bar.description == "bench"
