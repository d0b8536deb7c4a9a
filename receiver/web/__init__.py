"""Pages for people, served by the receiver: HTML made on the server, usable without
JavaScript, behind the same credentials as the read API.

``routes.py`` (the page routes, ``/static/``, and ``install(app)``), ``pages.py`` (templates,
the ``page`` guard, ``render``, the safety headers), ``auth.py`` (sessions, CSRF, who is
looking), ``keys.py`` (the HMAC keys every replica shares), ``proxy.py`` (the trusted proxy
and the socket peer it is checked against), ``charts.py`` (SVG).
"""
