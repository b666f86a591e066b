"""ltlib: deep long-tailed image recognition, a notebook tutorial series backed by a small, fast library."""
__version__ = "0.1.0"
