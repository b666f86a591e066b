"""The ground layer: errors, registries, atomic file writes, the environment (devices, threads, seeds), the types a
batch's targets have, precision, the replica helpers of a data-parallel job, and progress bars. Imports no other
part of ltlib."""
