"""Categories and per-recipient preferences; unsubscribe links and the end user's preference page."""
