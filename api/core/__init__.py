"""The HTTP plumbing every capability stands on: the error body and its documentation (errors), who may
call (auth), the Temporal gateway and its errors (temporal), visibility reads (visibility), the body
limit, the request metrics and /metrics, Idempotency-Key (idempotency), /healthz and /readyz (health),
and the models' bases (models). It imports no capability."""
