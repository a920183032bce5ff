"""SleepEdge runtime: streaming sleep staging for wearables (torch-free).

Subpackages: ``ops`` (streaming operators), ``devices`` (descriptor files), ``features``
(descriptor-built feature pipelines). Sources, models, sinks arrive with their issues.
"""

__version__ = "0.1.0"
