#!/usr/bin/env bash
# CI for fastconv.distributed (issue 7). Usage: .ci/distributed.sh REPO_ROOT WORK_DIR
# From a fresh clone of REPO_ROOT, in its own virtual environment under WORK_DIR: install
# with the mpi extra (mpi4py and MPICH, both from PyPI: the install must bring an MPI
# runtime and its mpiexec), check that mpiexec starts several ranks that see each other,
# run `fastconv train --distributed` on 2 ranks, then tests/distributed (jobs of 2 and 3
# ranks on this machine; none of them may be skipped).
set -euo pipefail
ROOT="$(cd "$1" && pwd)"
WORK="$2"
PY="${PYTHON:-python3}"
mkdir -p "$WORK"
git clone -q "$ROOT" "$WORK/src"
"$PY" -m venv "$WORK/venv"
# shellcheck disable=SC1091
. "$WORK/venv/bin/activate"
pip install -q --upgrade pip
(cd "$WORK/src" && pip install ".[mpi]")
pip install pytest
echo "mpiexec: $(command -v mpiexec)"
cd "$WORK"
mpiexec -n 3 python -c "
import numpy as np, fastconv.distributed as dist
dist.init_process_group()
total = dist.all_reduce(np.array([1.0]))
assert dist.get_world_size() == 3 and total[0] == 3, (dist.get_world_size(), total)
print('rank', dist.get_rank(), 'of', dist.get_world_size(), 'ok', flush=True)"
mpiexec -n 2 fastconv train --distributed --quiet --epochs 1 --limit-train 512 --limit-test 256
cd "$WORK/src"
pytest -rs tests/distributed | tee "$WORK/pytest.log"
if grep -q "skipped" "$WORK/pytest.log"; then
    echo "tests/distributed: tests were skipped, but mpi4py and mpiexec are installed" >&2
    exit 1
fi
deactivate
