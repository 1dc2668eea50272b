"""Distributors (分销员): applications with sealed ID numbers, operator review, role grant."""
