"""litejobs: a self-hosted scraping job server in one process."""

from litejobs.jobs import Job, JobSpec, JobState

__version__ = "0.1.0"
__all__ = ["Job", "JobSpec", "JobState", "__version__"]
