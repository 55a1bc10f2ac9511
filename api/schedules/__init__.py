"""Schedules: clients' recurring jobs (POST, GET, DELETE /schedules), and reading every schedule back."""
