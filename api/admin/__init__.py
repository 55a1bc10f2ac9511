"""The operator's view (admin token): the dashboard page and its templates, /admin/stats, /admin/jobs, and
the schedules' admin routes (/admin/schedules)."""
