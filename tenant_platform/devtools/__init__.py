"""Development-only pages (mounted under /dev/ when DEBUG is on): what the local mail catcher,
fake Twilio API and fake push service of `make run` received."""
