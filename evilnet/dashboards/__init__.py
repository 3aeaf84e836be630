"""EvilNet's three dashboards: their panels as data (:mod:`.panels`), used both by
grafana/generate.py (the Grafana JSON) and by ``evilnet dashboards`` (a local page)."""
