"""Preprocessed ACE-Step 1.5 datasets: safe loading, folder checks, batching and synthetic samples."""

from acetui.data.batching import Batch, batch_plan, collate
from acetui.data.cache import SampleCache
from acetui.data.samples import LATENT_FRAMES_PER_SECOND, Sample, SampleFileError, SampleInfo, load_sample
from acetui.data.scan import DatasetScan, SampleProblem, scan_dataset
from acetui.data.synthetic import write_dataset

__all__ = [
    "LATENT_FRAMES_PER_SECOND",
    "Batch",
    "DatasetScan",
    "Sample",
    "SampleFileError",
    "SampleCache",
    "SampleInfo",
    "SampleProblem",
    "batch_plan",
    "collate",
    "load_sample",
    "scan_dataset",
    "write_dataset",
]
