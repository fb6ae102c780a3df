"""acetui: rank ACE-Step 1.5 decoder attention projections by gradient sensitivity to a dataset."""

__version__ = "0.1.0"
