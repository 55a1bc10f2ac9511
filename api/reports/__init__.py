"""Reports: POST /reports (one per user and type in flight) and GET /reports/{jobId}/result."""
