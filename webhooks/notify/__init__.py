"""Notifications out: commit statuses and merge-request notes on GitLab, commit statuses
on GitHub, generic JSON webhooks; delivered by a background worker with retries."""

from webhooks.notify.events import TRIGGERS, CommitState, commit_state, event, fired_triggers
from webhooks.notify.github import GitHub
from webhooks.notify.gitlab import GitLab
from webhooks.notify.http import DeliveryError
from webhooks.notify.webhook import Webhook
from webhooks.notify.worker import DeliveryWorker

__all__ = [
    "TRIGGERS",
    "CommitState",
    "DeliveryError",
    "DeliveryWorker",
    "GitHub",
    "GitLab",
    "Webhook",
    "commit_state",
    "event",
    "fired_triggers",
]
