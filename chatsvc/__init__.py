"""chatsvc: self-hostable live chat with a help-center bot, agents, tickets and article gaps."""

__version__ = "0.1.0"
