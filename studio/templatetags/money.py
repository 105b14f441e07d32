"""`{{ amount|usd }}`: money as studio.pricing.money formats it, on every page."""

from __future__ import annotations

from django import template

from studio.pricing import money

register = template.Library()


@register.filter
def usd(amount) -> str:
    return money(amount)
