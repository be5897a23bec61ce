"""End-to-end tests: real discord.py processes against a fake Discord on 127.0.0.1.

``fake_discord`` is the server (REST in ``fake_rest``, gateway in ``fake_gateway``), ``client`` acts as
guild members, ``launcher`` runs a bot script unchanged with discord.py pointed at the fake.
``conftest`` starts easel's own ``bot.py`` that way (one process per test module); the ``test_bot_*``
modules act as members against it, with ``easel_helpers`` to find results, refusals and job ids.
"""
