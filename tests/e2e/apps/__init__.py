"""Small function apps that exercise devhost's host behaviour (retries, dead letters, topics, triggers)."""
