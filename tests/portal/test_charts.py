"""The server-side SVG charts: accessible, one element per data point, and safe with any label."""

from costmonitor.portal import charts


def test_a_line_chart_has_a_title_a_description_axes_and_every_point():
    svg = charts.line_chart(title="Daily spend", desc="Spend per day", budget=50,
                            series=[("2025-08-01", 12.5), ("2025-08-02", 20)], forecast=[("2025-08-03", 25)])
    assert 'role="img"' in svg and "<title" in svg and ">Daily spend</title>" in svg and ">Spend per day</desc>" in svg
    assert svg.count('class="point"') == 2 and svg.count("forecast-point") == 1
    assert "2025-08-02: $20.00" in svg and "Budget $50.00" in svg and "Spend (USD)" in svg and ">Day<" in svg


def test_a_model_name_cannot_inject_markup_into_a_chart():
    svg = charts.bar_chart(title="By model", desc="d", items=[('<script>alert("x")</script>', 3)])
    assert "<script>" not in svg and "&lt;script&gt;" in svg


def test_hours_without_spend_still_draw_an_empty_chart_with_a_message():
    svg = charts.column_chart(title="By hour", desc="d", items=[(f"{h:02d}", 0) for h in range(24)])
    assert svg.startswith("<svg") and "No spend in this period" in svg and 'class="point' not in svg


def test_columns_keep_their_order_and_bars_are_sorted_largest_first():
    columns = charts.column_chart(title="t", desc="d", items=[("00", 1), ("01", 3)])
    assert columns.index("00: $1.00") < columns.index("01: $3.00")
    bars = charts.bar_chart(title="t", desc="d", items=[("small", 1), ("big", 9)])
    assert bars.index("big: $9.00") < bars.index("small: $1.00")
