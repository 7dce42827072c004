"""`cxpipe act`: deliver `cx.signals` to HTTP webhooks (a Faust app with tables)."""
