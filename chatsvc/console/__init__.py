"""The agent console: log-in and roles (auth), the live queue and conversations (live)."""
