"""Type stubs for the native module ``battery_fl._core``."""

__version__: str
