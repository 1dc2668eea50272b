"""Envelope encryption of personal data: per-record AES-256-GCM data keys wrapped by a master
key (Tencent Cloud KMS, or a local key file in development), bound to an encryption context."""
