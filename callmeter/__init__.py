"""callmeter-worker: turns a test plan into real SIP endpoints and reports call quality."""

__version__ = "0.1.0"
__all__ = ["__version__"]
