"""Workout recommendations grounded in a measured set (issue 5).

``prompt.normalize`` turns an analysis into the numbers advice rests on; ``engine.Recommender``
answers from the model (``client``, cached in ``cache``, coalesced) or from ``rules``;
``routes`` is ``POST /v1/recommendations``; ``cli`` is ``formcheck recommend``. Nothing is
imported here: ``formcheck analyze`` builds its parser with ``cli`` and must stay quick to start.
"""
