"""The dashboard example: state written by non-LiveView code, shown live, read-only to viewers."""
