"""What the API and the worker both import: settings and the job models."""
