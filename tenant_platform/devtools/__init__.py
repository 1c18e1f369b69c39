"""Development-only pages (mounted under /dev/ when DEBUG is on): the local mailbox."""
