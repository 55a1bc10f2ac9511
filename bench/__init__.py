"""`python -m bench`: Herald's throughput, latency and worker cost against bare Temporal, in one run."""
