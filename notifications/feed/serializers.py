"""The shape of a feed item, the same over REST and over the WebSocket."""

from typing import Any

from rest_framework import serializers

from ..models import FeedStatus, InAppMessage


class FeedItemSerializer(serializers.ModelSerializer[InAppMessage]):
    class Meta:
        model = InAppMessage
        fields = ("id", "title", "body", "url", "data", "status", "created_at", "read_at")
        read_only_fields = fields


class FeedItemUpdate(serializers.Serializer[InAppMessage]):
    status = serializers.ChoiceField(choices=FeedStatus.choices)


class FeedCounts(serializers.Serializer[Any]):
    unread = serializers.IntegerField(help_text="Unread items: the badge")
    total = serializers.IntegerField(help_text="Items not archived")


class FeedPageOut(serializers.Serializer[Any]):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = FeedItemSerializer(many=True)
    counts = FeedCounts()


class BadgeOut(serializers.Serializer[Any]):
    unread = serializers.IntegerField()


class MarkAllReadOut(serializers.Serializer[Any]):
    updated = serializers.IntegerField(help_text="How many items went from unread to read")
    counts = FeedCounts()


class RecipientTokenOut(serializers.Serializer[Any]):
    token = serializers.CharField(help_text="Give it to the end user's browser: the feed widget's `token`")
    expires_in = serializers.IntegerField(help_text="Seconds until the token stops working")


def item_json(item: InAppMessage) -> dict[str, Any]:
    """A feed item as plain JSON types (for the channel layer as well as for REST)."""
    return dict(FeedItemSerializer(item).data)
