"""Herald's local dev stack: `python -m devstack` (what `make run` starts).

- `devstack.__main__`: the launcher, read top to bottom as the startup sequence.
- `devstack.processes`: supervision of the child processes.
- `devstack.environment`: the settings the launcher hands to its children.
- `devstack.temporal_server`: the Temporal dev server command and its readiness check.
- `devstack.readiness`: waiting for ports and HTTP endpoints.
- `devstack.smtp_sink`, `devstack.sms_sink`: stand-ins for a mail provider and an SMS gateway.
"""
