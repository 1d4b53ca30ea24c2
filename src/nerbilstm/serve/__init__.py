"""HTTP serving: a JSON API, a one-page web UI and offline API docs over a loaded ``Tagger``.

Needs the ``serve`` extra (FastAPI and uvicorn). ``nerbilstm serve`` runs it; tests build the
app in memory with :func:`nerbilstm.serve.app.create_app`.
"""
