from app.greeting import greet, shout


def test_greets_by_name():
    assert greet("Ada") == "Hello, Ada!"


def test_blank_name_greets_the_world():
    assert greet("  ") == "Hello, world!"


def test_shout_is_upper_case():
    assert shout("ada") == "HELLO, ADA!"
