"""Serving simulation: continuous batching, paged KV cache, SLO goodput, capacity.

``cost.py`` prices one engine iteration of a mixed batch from the per-operator engine;
``workload.py`` draws arrivals and lengths; ``sim.py`` runs the discrete-event simulation
of a replica (or several behind a router); ``capacity.py`` searches the highest request
rate meeting latency SLOs. See ``docs/serving.md``.
"""

from .cost import IterationCost
from .sim import SchedulerConfig, SimResult, simulate
from .workload import Workload, make_workload

__all__ = ["IterationCost", "SchedulerConfig", "SimResult", "simulate", "Workload",
           "make_workload"]
from .capacity import Capacity, capacity  # noqa: E402

__all__ += ["Capacity", "capacity"]
