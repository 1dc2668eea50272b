"""Database backups: consistent archives of MariaDB/MySQL or SQLite, verified by restoring them."""
