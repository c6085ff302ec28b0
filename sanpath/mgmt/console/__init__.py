"""The web console, served by the host daemon (``sanpath host serve --console ADDR:PORT``): the pool tree,
host General and Properties -> Multipathing, SR General with its paths and a live throughput chart, the
New SR wizard, alerts and the advisor. Jinja2 pages with htmx and uPlot vendored under static/; the
daemon's event stream keeps them current without reloads."""

from .app import build_console

__all__ = ["build_console"]
