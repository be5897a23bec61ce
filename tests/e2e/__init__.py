"""End-to-end tests: real discord.py processes against a fake Discord on 127.0.0.1.

``fake_discord`` is the server (REST in ``fake_rest``, gateway in ``fake_gateway``), ``client`` acts as
guild members, ``launcher`` runs a bot script unchanged with discord.py pointed at the fake.
"""
