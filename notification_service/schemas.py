"""The notification service's HTTP bodies, in the public contract's names."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from shared.events.models import NotificationType


class NotificationOut(BaseModel):
    id: str
    userId: str
    type: NotificationType
    content: str
    sentAt: datetime
    read: bool
