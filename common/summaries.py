"""What a run shows in the Temporal Web UI's run list and header: a short, redacted summary.

Summaries are stored beside the run (user metadata), encrypted like every payload (common/codec.py),
and the Web UI shows them decrypted in every list of runs, to whoever opens it; so they carry no
personal data in full: an address or number is masked, a URL keeps its scheme and host, and no
message text appears at all.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from common.models import CleanupInput, NotificationInput, ReportInput


def mask_email(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def mask_phone(number: str) -> str:
    # Country code and the last two digits: enough to tell two recipients apart at a glance.
    return f"{number[:3]}{'*' * max(len(number) - 5, 3)}{number[-2:]}"


def url_host(url: str) -> str:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port urllib cannot read: the summary goes without it
        port = None
    return f"{parts.scheme}://{parts.hostname or '?'}{f':{port}' if port else ''}/…"


def job_summary(request: NotificationInput | CleanupInput | ReportInput) -> str:
    """One line for the run's list entry and header, e.g. `email to a***@example.com`."""
    if isinstance(request, ReportInput):
        return f"report: {request.report.report_type}"
    if isinstance(request, CleanupInput):
        return f"cleanup: {request.cleanup.task}"
    if request.email:
        return f"email to {mask_email(request.email.to)}"
    if request.sms:
        return f"SMS to {mask_phone(request.sms.phone)}"
    if request.typed:
        # The userId is the client's own text (maybe an address): not shown.
        return f"{request.typed.type} email to a user"
    assert request.webhook
    return f"webhook to {url_host(request.webhook.url)}"


def job_details(request: NotificationInput | CleanupInput | ReportInput) -> str:
    """A few lines of Markdown for the run's page: the options, never the content."""
    spec = request.job
    lines = [
        f"**{job_summary(request)}**",
        "",
        f"- job id: `{spec.job_id or '(each scheduled run its own)'}`",
        f"- attempts: at most {spec.retry.max_attempts}, {spec.retry.backoff} backoff from {spec.retry.delay_ms} ms",
    ]
    if spec.deliver_at:
        lines.append(f"- deliver at: {spec.deliver_at}")
    elif spec.delay_ms:
        lines.append(f"- delay: {spec.delay_ms} ms")
    if spec.callback_url:
        lines.append(f"- result callback to {url_host(spec.callback_url)}")
    return "\n".join(lines)
