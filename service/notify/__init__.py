"""Notifications: a subscriber on the log that turns trouble into incidents
(``subscriber.py``), the senders of each channel type (``channels.py``) and the
delivery loop with its retries (``delivery.py``), run together by ``Notifier``
(``notifier.py``) in the worker role. The rules are ``service/domain/notifications.py``;
the atomic steps ``service/store/notify.lua``."""
