"""What the app says. Change the text and save: podlink syncs it and restarts the app."""


def greet(name: str) -> str:
    cleaned = name.strip() or "world"
    return f"Hello, {cleaned}!"


def shout(name: str) -> str:
    return greet(name).upper()
