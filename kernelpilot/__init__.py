"""kernelpilot: observe -> learn -> kernelize -> act -> measure, for Linux kernel decisions."""
__version__ = "0.1.0"
