"""`mlcls serve`: a trained run as an HTTP service (FastAPI + uvicorn, the optional `serve` extra).

    batcher.py     dynamic batching: the records of requests that arrive together are scored in one call, in a
                   worker thread (the event loop keeps reading and answering requests meanwhile)
    app.py         create_app: the run, the settings, the batcher and the routes wired into one FastAPI app
                   (its state), the lifespan that starts and stops the batcher, /v1/model's card
    routes.py      the endpoints (/v1/predict, /v1/labels, /v1/model, /health, /ready) at module level, reading
                   app.state; the optional bearer token; /v1/predict takes application/json only (415 otherwise)
    request.py     POST /v1/predict's body declared once: the parser and the OpenAPI schema both made from it
    api_errors.py  every refusal as one JSON error shape that names the field and the record
    drain.py       SIGTERM's drain deadline: an ASGI middleware answers a JSON 503 with Retry-After to the requests
                   still unfinished when --drain-seconds are up (instead of uvicorn's plain-text 500 and a traceback)
    docs_pages.py  /docs and /redoc with their scripts served locally (fastapi-offline's files), no CDN
    settings.py    what the options set (batching, limits, token, drain time)
    server.py      start-up and shutdown: the extra checked, the token file read (printable ASCII only), the run
                   loaded and tried once, the port bound (each a one-line error), then uvicorn; SIGTERM drains the
                   requests in flight and exits 0

Only server.py imports uvicorn, and only when `mlcls serve` runs; batcher.py, settings.py and server.py import
no FastAPI at module level, so that the CLI reads the options and checks the extra before FastAPI loads.
"""
