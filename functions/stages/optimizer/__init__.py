"""Optimizer: the compositions' mutating admission webhook, Krateo's GET /optimize, and the periodic day-2
labelling of compositions; one entry module each, each with one `handle()`.

- `admission`: an AdmissionReview v1 from the API server (MutatingWebhookConfiguration, CREATE and
  UPDATE of compositions) in, an AdmissionReview out, always allowed (fail-open).
- `optimize`: Krateo's moving-window microservice contract, GET /optimize.
- `label`: a PingSource tick naming composition kinds; each composition's `optimization` label is
  bumped so that the API server sends its day-2 UPDATE admission (Krateo's label trick).

What they share: `deps` (what the entries need, built once per process from the settings), `windows`
(a resource's usage windows from the database handler's `cyclic` notebook, cached), and behind the
admission `rightsizing` (day-2) and `placement` (day-1, carbon-aware).
"""

__all__ = ["admission", "label", "optimize"]
