"""The Hessian engine: HVPs, extreme eigenpairs, trace and spectral density of the
loss Hessian on a fixed probe set.

    probe = ProbeSet.draw(x_train, y_train, n_batches=2, size=256, seed=0)
    with HessianOperator(model, F.cross_entropy, probe) as op:
        eig = lanczos(op, k_top=5, k_bottom=1)
        report = full_report(op, top_k=5, bottom_k=1, trace=True, trace_method="hutchpp", trace_hvp=99,
                             density=True, slq_runs=10, slq_steps=80, seed=0)

(services.hessian.measure makes that call from a hessian-report request, hessian_request.HessianRequest.)
"""

from .density import DensityEstimate, slq_density, smooth_density
from .hvp import HVPUnavailableError
from .lanczos import LanczosResult, lanczos
from .memory import is_out_of_memory, out_of_memory_message
from .operator import HessianOperator
from .probe import ProbeSet
from .report import full_report
from .trace import TraceEstimate, hutchinson_trace, hutchpp_trace

__all__ = [
    "DensityEstimate",
    "HVPUnavailableError",
    "HessianOperator",
    "LanczosResult",
    "ProbeSet",
    "TraceEstimate",
    "full_report",
    "hutchinson_trace",
    "hutchpp_trace",
    "is_out_of_memory",
    "lanczos",
    "out_of_memory_message",
    "slq_density",
    "smooth_density",
]
