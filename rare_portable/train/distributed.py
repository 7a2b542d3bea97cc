"""Data-parallel training on MindSpore's own launchers (msrun, mpirun): one process per device.

Every rank builds the same network from the same seed, reads its slice of each global batch, and the
gradients are averaged with `nn.DistributedGradReducer` inside the compiled step, so the ranks' trainable
weights stay identical. Batch-norm statistics are per rank between epochs (as in MindOCR); we average them
at each epoch end so every rank holds, and rank 0 saves, the same network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np


@dataclass(frozen=True)
class Cluster:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """The rank that writes checkpoints, logs and curves, and validates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_by_launcher() -> bool:
    """msrun marks its workers, and the scheduler process it runs the same script in, with MS_ROLE; mpirun
    sets OMPI_COMM_WORLD_SIZE. The scheduler must call init() too: that is where it serves the workers."""
    return os.environ.get("MS_ROLE") in ("MS_WORKER", "MS_SCHED") or "OMPI_COMM_WORLD_SIZE" in os.environ


def start_cluster(distribute: bool) -> Tuple[Cluster, Optional[str]]:
    """The cluster this process belongs to, and a note when `system.distribute` could not be honoured."""
    if not distribute:
        return Cluster(), None
    if not launched_by_launcher():
        return Cluster(), ("system.distribute is true but this process was not started by msrun or mpirun: "
                           "training in this one process (set system.distribute: false to silence this note)")
    import mindspore as ms
    from mindspore.communication import get_group_size, get_rank, init

    init()
    size = get_group_size()
    ms.set_auto_parallel_context(parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=size)
    return Cluster(get_rank(), size), None


def gradient_reducer(cluster: Cluster, parameters):
    """The all-reduce (mean) of the gradients of `parameters`, or None for a single process."""
    if not cluster.distributed:
        return None
    from mindspore import nn

    return nn.DistributedGradReducer(parameters, mean=True, degree=cluster.size)


def any_rank(cluster: Cluster, flag: bool) -> bool:
    """True when `flag` is true on any rank: every rank stops at the same step."""
    if not cluster.distributed:
        return flag
    import mindspore as ms
    from mindspore import ops

    reduced = ops.AllReduce()(ms.Tensor(np.array([float(flag)], np.float32)))  # CPU reduces by sum only
    return bool(reduced.asnumpy()[0] > 0)


def average_statistics(cluster: Cluster, network) -> None:
    """Replace each rank's batch-norm moving statistics by their mean over the ranks."""
    if not cluster.distributed:
        return
    from mindspore import ops

    all_reduce = ops.AllReduce()
    for param in network.get_parameters():
        if not param.requires_grad:  # assign in place: a compiled graph does not see Parameter.set_data
            ops.assign(param, all_reduce(param.value()) / cluster.size)
