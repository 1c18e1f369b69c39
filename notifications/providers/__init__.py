"""Delivery providers: one module per provider behind one base class per channel."""
