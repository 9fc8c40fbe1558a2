"""The ScaledApi backend: a small Flask API served by gunicorn (see ``gunicorn_conf``)."""
