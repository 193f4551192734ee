#!/bin/bash
# Resumable k-medoids on a SLURM cluster with a Dask cluster started by dask-mpi.
#
# Submit:    sbatch examples/slurm_job.sh /shared/D.zarr 100 /shared/out
# Needs:     pip install chunked-medoids dask-mpi mpi4py   (and an MPI matching srun)
# Data:      the store (built e.g. with `chunked-medoids build X.npy -o /shared/D.zarr
#            --metric euclidean --scheduler-file ...`) must be on a file system shared by
#            all nodes: workers open it by path.
#
# Where the work happens: FasterPAM's eager walk runs on the Dask workers.  Each worker
# reads its share of the store's rows once (about n^2 * 4 / workers bytes: keep it under
# half of --memory-limit below, or the workers re-read their rows every pass) and keeps a
# replica of the O(n*k) caches; this batch shell's rank only coordinates.  The result is
# bitwise the sequential one whatever the number of workers.  A worker that dies is
# replaced by another one re-reading its rows (identical result).  Without a cluster
# (e.g. dask-mpi missing) see examples/slurm_cluster.py for the dask-jobqueue variant.
#
# How the walltime is survived:
#   * --signal=B:USR1@300 makes SLURM send SIGUSR1 to this batch shell 300 s before the
#     time limit; the trap below forwards it to chunked-medoids, which saves its checkpoint
#     at the next block boundary and exits with code 3.
#   * --requeue allows `scontrol requeue`; on exit code 3 the job puts itself back in the
#     queue, and the next run of the same command resumes from the checkpoint to the
#     identical result (a checkpoint of another matrix or other parameters is refused with
#     exit code 2 instead of being reused).
#   * Exit code 0: done, outputs in $OUT (summary.json is written last, atomically).
#
#SBATCH --job-name=kmedoids
#SBATCH --nodes=2
#SBATCH --ntasks=9                  # rank 0: scheduler, ranks 1-8: workers (dask-mpi)
#SBATCH --cpus-per-task=1
#SBATCH --mem-per-cpu=4G
#SBATCH --time=04:00:00
#SBATCH --signal=B:USR1@300
#SBATCH --requeue
#SBATCH --open-mode=append          # keep the log of earlier (requeued) runs
#SBATCH --output=kmedoids-%j.log

set -u

STORE=${1:?usage: sbatch slurm_job.sh STORE K OUTDIR}
K=${2:?usage: sbatch slurm_job.sh STORE K OUTDIR}
OUT=${3:?usage: sbatch slurm_job.sh STORE K OUTDIR}
mkdir -p "$OUT"
CHECKPOINT="$OUT/fit.ckpt"                       # same path on every requeued run
SCHED="$OUT/scheduler-${SLURM_JOB_ID:-local}.json"
rm -f "$SCHED"

# 1. Dask cluster: dask-mpi turns the MPI ranks into a scheduler (rank 0) and workers.
#    (dask-jobqueue alternative: start a SLURMCluster in a small Python script and write
#    client.write_scheduler_file("$SCHED").)
#    Add e.g. `--interface ib0` to use the InfiniBand network.
srun --kill-on-bad-exit=0 dask-mpi --scheduler-file "$SCHED" --nthreads 1 \
     --memory-limit 3.5GB --no-nanny &
DASK_PID=$!
for _ in $(seq 1 120); do [ -s "$SCHED" ] && break; sleep 1; done
if [ ! -s "$SCHED" ]; then
    echo "dask-mpi did not write $SCHED" >&2
    kill "$DASK_PID" 2>/dev/null
    exit 1
fi

# 2. The clustering (its eager walk on the workers), in the background so the shell can
#    receive and forward SIGUSR1.
chunked-medoids -v fit "$STORE" -k "$K" --method fasterpam --init lab --seed 0 \
    --memory-limit 2GiB \
    --scheduler-file "$SCHED" \
    --checkpoint "$CHECKPOINT" --checkpoint-interval 300 \
    --output "$OUT" --no-progress &
FIT_PID=$!
trap 'echo "SIGUSR1: asking chunked-medoids to checkpoint"; kill -USR1 "$FIT_PID"' USR1
trap 'kill -TERM "$FIT_PID"' TERM

# `wait` returns early (status > 128) when a trapped signal arrives: wait again until the
# process is gone.  If it exited right after the interrupted wait, bash still holds its
# status: one more `wait` returns it (127 means it was already collected).
wait "$FIT_PID"; STATUS=$?
while [ "$STATUS" -gt 128 ] && kill -0 "$FIT_PID" 2>/dev/null; do
    wait "$FIT_PID"; STATUS=$?
done
if [ "$STATUS" -gt 128 ]; then
    wait "$FIT_PID" 2>/dev/null; LATE=$?
    [ "$LATE" -ne 127 ] && STATUS=$LATE
fi

kill "$DASK_PID" 2>/dev/null
wait "$DASK_PID" 2>/dev/null

case $STATUS in
    0) echo "done: $(cat "$OUT/summary.json" | head -c 300)" ;;
    3) echo "checkpoint saved to $CHECKPOINT; requeueing job ${SLURM_JOB_ID}"
       scontrol requeue "$SLURM_JOB_ID" ;;
    2) echo "bad input or mismatched checkpoint (see the error above); not requeued" >&2 ;;
    *) echo "chunked-medoids failed with exit code $STATUS" >&2 ;;
esac
exit "$STATUS"
