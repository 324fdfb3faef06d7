"""The HBM traffic of NCCL's kernels: what a collective reads and writes in each rank's memory.

NCCL's kernels move data with loads and stores through the GPU's memory, so while a
collective runs its kernels take part of the HBM bandwidth from the compute beside it
(:func:`mcdla.hw.gpu.hbm_left_Bps`). What they move per byte follows from NCCL's device
code (NVIDIA/nccl, tag v2.18.5-1, the version of the validation's nccl-tests curves;
``src/collectives/device/``), for one process per GPU without registered buffers (how
Megatron-LM and PyTorch call it):

- **FIFO-staged** algorithms (ring, tree, point-to-point; ``all_reduce.h`` runRing and
  runTreeUpDown, ``prims_simple.h``, ``prims_ll.h``, ``prims_ll128.h``): a rank's send
  lands in a FIFO buffer in device memory (``connEltsFifo``; over NVLink the P2P
  transport's buffer, in the receiver's memory, or with P2P read on A100 in the sender's,
  ``src/transport/p2p.cc`` and ``src/graph/paths.cc``), which the receiving kernel reads
  back: every byte on the wire is written into a FIFO once and read from it once
  (:data:`FIFO_TOUCHES`). Direct reads and writes into the peer's user buffer
  (``DirectRead``/``DirectWrite`` in ``prims_simple.h``) need registered buffers or one
  process for several GPUs, so they are not taken. Over a ring every rank sends as much
  as it receives, so per rank the FIFOs carry ``FIFO_TOUCHES`` x its wire bytes. LL and
  LL128 stage through FIFOs too, with their flags (``wire_factor``: LL 8 bytes per 4 of
  data, LL128 128 per 120), so their FIFO traffic is the wire's, flags included.
  Besides the FIFOs, the kernels read the user's input and write its output once each
  (:func:`user_bytes`): a ring all-reduce reads its input chunk in the reduce-scatter
  steps (``directRecvReduceDirectSend``) and writes the result in the all-gather steps
  (``directRecvCopyDirectSend``, ``directRecv``).
- **NVLS** (``all_reduce.h``, ``reduce_scatter.h``, ``all_gather.h``,
  ``NCCL_ALGO_NVLS``): the reduction and the multicast are the switch's
  (``multimem.ld_reduce``, ``multimem.st``), but they read and write each GPU's copy of
  the multicast buffer; the kernels copy the input into that buffer (scatter warps) and
  the result out of it (gather warps). Per byte of an all-reduce each rank's HBM sees
  its input read, the buffer written, read by the switch's reduction, written by its
  multicast and read by the gather, and the output written: 6 bytes
  (:data:`NVLS_PER_BYTE`). A reduce-scatter copies its input in (2), has it read by
  the reduction (1) and writes its 1/p of output; an all-gather reads its 1/p of input
  for the multicast, which writes the buffer (1), then copies it out (2).

Not modelled: across machines with GPUDirect RDMA, a network hop stages in a FIFO on
both sides (the sender's, which the NIC reads, and the receiver's, which the NIC
writes), twice the NVLink hop's traffic; the rate is taken over the whole collective
(docs/model.md, "NCCL's HBM traffic").
"""

from __future__ import annotations

from mcdla.hw.collective_model import bus_factor

__all__ = ["FIFO_TOUCHES", "NVLS_PER_BYTE", "user_bytes", "hbm_bytes"]

# Each byte a FIFO-staged algorithm puts on the wire is written into a FIFO buffer in
# device memory once and read from it once (module docstring; prims_simple.h waitPeer's
# connEltsFifo, v2.18.5-1).
FIFO_TOUCHES = 2

# NVLS: each rank's HBM bytes per byte of the buffer (module docstring): all-reduce's six
# touches, and the touches of reduce-scatter and all-gather besides their 1/p of user
# buffer (RunWorkElement<..., NCCL_ALGO_NVLS, ...> in all_reduce.h, reduce_scatter.h,
# all_gather.h, v2.18.5-1).
NVLS_PER_BYTE = {"all_reduce": 6.0, "reduce_scatter": 3.0, "all_gather": 3.0}


def user_bytes(op: str, size_bytes: float, ranks: int) -> float:
    """The user buffers' bytes one rank's kernels read and write: its input read once and
    its output written once (``size_bytes`` the whole buffer, as nccl-tests counts it:
    all-gather's output, reduce-scatter's input; a broadcast's rank reads or writes it)."""
    if op in ("all_gather", "reduce_scatter"):
        return size_bytes + size_bytes / ranks
    if op == "broadcast":
        return size_bytes
    return 2 * size_bytes  # all-reduce, all-to-all: the whole input in, the whole output out


def hbm_bytes(op: str, size_bytes: float, ranks: int, staging: str = "fifo", wire_factor: float = 1.0) -> float:
    """HBM bytes one rank's NCCL kernels read and write for ``op`` of ``size_bytes`` over
    ``ranks`` ranks: FIFO-staged (``staging="fifo"``: the FIFOs' touches of the wire's
    bytes, flags included by ``wire_factor``, and the user buffers) or NVLS (``"nvls"``;
    an operation NVLS does not run, a broadcast, is FIFO-staged)."""
    if staging == "nvls" and op in NVLS_PER_BYTE:
        own = 0.0 if op == "all_reduce" else size_bytes / ranks  # reduce-scatter's output, all-gather's input
        return NVLS_PER_BYTE[op] * size_bytes + own
    wire = size_bytes * bus_factor(op, ranks) * wire_factor
    return FIFO_TOUCHES * wire + user_bytes(op, size_bytes, ranks)
