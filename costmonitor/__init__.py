"""CostMonitor: the Django project package, and the client SDK pipelines import.

`import costmonitor` needs no Django: the SDK (`costmonitor.sdk`) depends on an HTTP client only.
"""

__version__ = "1.0.0"
