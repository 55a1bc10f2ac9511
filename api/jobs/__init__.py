"""Jobs: the /jobs family (email, sms, cleanup), every job's status in each vocabulary, cancel, live status
(SSE and long poll), batch items read as jobs, the SMS throttle, and starting any job (starter.py)."""
