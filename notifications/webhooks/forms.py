"""The console's endpoint form: the URL is checked as every endpoint's is (transport.validate_url)."""

from typing import Any

from django import forms

from notifications.models import DeliveryStatus

from .transport import validate_url


class EndpointForm(forms.Form):
    url = forms.CharField(
        label="URL",
        max_length=2048,
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/herald/webhooks", "size": 60}),
    )
    description = forms.CharField(max_length=200, required=False)
    statuses = forms.MultipleChoiceField(
        label="Send these delivery statuses",
        choices=DeliveryStatus.choices,
        initial=list(DeliveryStatus.values),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one delivery status to send."},
    )
    is_active = forms.BooleanField(label="Active", required=False, initial=True)

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not editing:  # a new endpoint starts active
            del self.fields["is_active"]

    def clean_url(self) -> str:
        return validate_url(self.cleaned_data["url"])

    def clean_statuses(self) -> list[str]:
        chosen = set(self.cleaned_data["statuses"])
        return [s for s in DeliveryStatus.values if s in chosen]  # stored in the state machine's order
