"""Distributors (分销员, B9): applications with sealed ID numbers, operator review, role grant."""
