"""Browser tests: the chat example in real headless Chromium, on one node and on two."""
