"""Herald's HTTP API: accepts jobs, starts them as Temporal workflows, reads their state back."""
