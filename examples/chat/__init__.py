"""The chat example: a lobby and chat rooms sharing live state across nodes."""
