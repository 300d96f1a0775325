"""Integration events: the envelope, the topic registry and the payload models."""

from shared.events.envelope import Envelope, EnvelopeError
from shared.events.models import (
    EVENT_TYPES,
    Event,
    NotificationCreated,
    NotificationRead,
    NotificationRequested,
    OrderPlaced,
    OrderStatusChanged,
    PastPurchase,
    PromotionPublished,
    PurchaseHistoryProvided,
    PurchaseHistoryRequested,
    RecommendationGenerated,
    UserPreferencesUpdated,
    UserPurchaseHistoryUpdated,
    UserRegistered,
)
from shared.events.topics import TOPICS, Topic, consumer_groups, dead_letter_topic, topic

__all__ = [
    "EVENT_TYPES",
    "TOPICS",
    "Envelope",
    "EnvelopeError",
    "Event",
    "NotificationCreated",
    "NotificationRead",
    "NotificationRequested",
    "OrderPlaced",
    "OrderStatusChanged",
    "PastPurchase",
    "PromotionPublished",
    "PurchaseHistoryProvided",
    "PurchaseHistoryRequested",
    "RecommendationGenerated",
    "Topic",
    "UserPreferencesUpdated",
    "UserPurchaseHistoryUpdated",
    "UserRegistered",
    "consumer_groups",
    "dead_letter_topic",
    "topic",
]
