"""battery_fl: federated, privacy-preserving battery-lifetime prediction.

The logic lives in the Rust core; this package re-exports its Python bindings.

>>> import battery_fl
>>> isinstance(battery_fl.__version__, str)
True
"""

from battery_fl._core import __version__

__all__ = ["__version__"]
