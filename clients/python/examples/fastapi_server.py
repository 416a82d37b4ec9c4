"""A FastAPI model server that logs every prediction (and, later, its true label) to Custos.

The model here is a stand-in (a logistic curve of the amount); the logging is the point. Each
request only queues its row: a background thread of :class:`custos_client.Logger` sends batches,
so a slow or unreachable Custos server never slows predictions down (if it stays away long
enough for the buffer to fill, rows are dropped and counted, see ``GET /monitoring/custos``).

Run it (FastAPI and uvicorn are the example's dependencies, not the client's)::

    pip install ./clients/python fastapi uvicorn
    export CUSTOS_URL=https://custos.example.org            # http:// only to a loopback address
    export CUSTOS_TOKEN_FILE=/run/secrets/custos-fraud-v3   # scopes predictions:write, labels:write
    export CUSTOS_MODEL=fraud-v3                            # registered with the fields below
    uvicorn fastapi_server:app --app-dir clients/python/examples

    curl -s localhost:8000/predict -H 'content-type: application/json' \\
         -d '{"amount": 125.0, "country": "DE"}'
    curl -s localhost:8000/feedback -H 'content-type: application/json' \\
         -d '{"event_id": "<from /predict>", "is_fraud": false}'

The model must be registered in Custos with ``id_field`` ``event_id``, ``timestamp_field`` ``ts``,
features ``amount`` (numeric) and ``country`` (categorical) and the prediction ``score``
(``binary_score``), as in the README's API section.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
import os
import uuid
from typing import AsyncIterator

from fastapi import FastAPI, Request
from pydantic import BaseModel, Field

from custos_client import Client, Logger

MODEL = os.environ.get("CUSTOS_MODEL", "fraud-v3")


class Transaction(BaseModel):
    amount: float = Field(ge=0)
    country: str = Field(min_length=2, max_length=2)


class Prediction(BaseModel):
    event_id: str
    score: float


class Feedback(BaseModel):
    event_id: str
    is_fraud: bool


def fraud_score(tx: Transaction) -> float:
    """The stand-in model."""
    return 1.0 / (1.0 + math.exp(-(tx.amount - 500.0) / 100.0))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # The token comes from CUSTOS_TOKEN or the file named by CUSTOS_TOKEN_FILE.
    client = Client(os.environ.get("CUSTOS_URL", "http://127.0.0.1:8750"))
    logger = Logger(client, MODEL, batch_rows=500, flush_interval=2.0, max_buffer_rows=50_000)
    app.state.custos = logger
    try:
        yield
    finally:
        # Send what is still buffered; give up (and report what was left) after 10 seconds.
        logger.close(timeout=10)
        client.close()


app = FastAPI(title="fraud model", lifespan=lifespan)


@app.post("/predict", response_model=Prediction)
def predict(tx: Transaction, request: Request) -> Prediction:
    event_id = str(uuid.uuid4())
    score = fraud_score(tx)
    # Only queues the row (no network call here); False would mean the buffer was full.
    request.app.state.custos.log_prediction(
        {
            "event_id": event_id,
            "ts": dt.datetime.now(dt.timezone.utc),
            "amount": tx.amount,
            "country": tx.country,
            "score": score,
        }
    )
    return Prediction(event_id=event_id, score=score)


@app.post("/feedback")
def feedback(fb: Feedback, request: Request) -> dict:
    """The true outcome, when it is known (days later, say): Custos joins it by event id."""
    request.app.state.custos.log_label(fb.event_id, fb.is_fraud)
    return {"ok": True}


@app.get("/monitoring/custos")
def custos_stats(request: Request) -> dict:
    """The logger's counters: sent, failed, dropped, retries (429/5xx/connection)."""
    return dataclasses.asdict(request.app.state.custos.stats())
