"""The package's version, in a module of its own so that every module can name it without importing the package
(whose ``__init__`` imports the library's entry points)."""

__version__ = "0.1.0"
