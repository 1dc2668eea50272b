"""The signed-in person's own account: profile, invitations, referrer, deletion and a copy of the data."""
