"""Serving simulation: continuous batching, paged KV cache, SLO goodput, capacity.

``cost.py`` prices one engine iteration of a mixed batch from the per-operator engine;
``workload.py`` draws arrivals and lengths; ``sim.py`` runs the discrete-event simulation
of a replica, several behind a router, or prefill/decode-disaggregated replicas (one
replica's scheduler in ``replica.py``, its settings in ``config.py``, the routers in
``router.py``, the results in ``result.py``);
``capacity.py`` searches the highest request rate meeting latency SLOs; ``search.py`` the
cheapest configuration for a target rate and the Pareto front; ``plots.py`` draws them
(matplotlib, imported when called). See ``docs/serving.md``.
"""

from .cost import IterationCost
from .sim import SchedulerConfig, SimResult, simulate
from .workload import Workload, make_workload
from .capacity import Capacity, capacity
from .search import Search, SearchPoint, search

__all__ = ["IterationCost", "SchedulerConfig", "SimResult", "simulate", "Workload",
           "make_workload", "Capacity", "capacity", "Search", "SearchPoint", "search"]
