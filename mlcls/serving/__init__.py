"""`mlcls serve`: a trained run as an HTTP service (FastAPI + uvicorn, the optional `serve` extra).

    batcher.py  dynamic batching: the records of requests that arrive together are scored in one call, in a
                worker thread (the event loop keeps reading and answering requests meanwhile)
    app.py      the FastAPI app: /v1/predict, /v1/labels, /v1/model, /health, /ready; every bad input a 4xx
                JSON error that names the field and the record; the optional bearer token
    settings.py what the options set (batching, limits, token)
    server.py   start-up and shutdown: the extra checked, the run loaded and tried once, the port bound (each a
                one-line error), then uvicorn; SIGTERM drains the requests in flight and exits 0

Only server.py and app.py import FastAPI / uvicorn, and only when `mlcls serve` runs.
"""
