"""The CPU sparse product: forward and weight gradient agree with scipy on any thread count, also after fork."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from perturbscore.nn import sparse_matmul


def _problem(n: int = 2_300, g: int = 700, m: int = 6) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = sp.random(n, g, density=0.1, format="csr", dtype=np.float32, random_state=rng)
    return x, rng.standard_normal((m, g)).astype(np.float32), rng.standard_normal((n, m)).astype(np.float32)


def _run(x: sp.csr_matrix, w: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    weight = torch.from_numpy(w.copy()).requires_grad_()
    y = sparse_matmul(x, weight)
    (y * torch.from_numpy(g)).sum().backward()
    return y.detach().numpy(), weight.grad.numpy()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matches_scipy_for_any_thread_count(threads: int) -> None:
    x, w, g = _problem()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        y, grad = _run(x, w, g)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(y, x @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grad, (x.T @ g).T, rtol=1e-4, atol=1e-4)


def test_read_only_and_int64_inputs_fall_back() -> None:
    x, w, g = _problem(n=300)
    x64 = sp.csr_matrix((x.data.copy(), x.indices.astype(np.int64), x.indptr.astype(np.int64)), shape=x.shape)
    ro = x.copy()
    ro.data.flags.writeable = False
    for variant in (x64, ro):
        y, grad = _run(variant, w, g)
        np.testing.assert_allclose(y, x @ w.T, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(grad, (x.T @ g).T, rtol=1e-4, atol=1e-4)


def _child(queue: mp.Queue) -> None:
    torch.set_num_threads(2)
    x, w, g = _problem()
    x.data.flags.writeable = False  # scipy forward: PyTorch's own OpenMP pool cannot run in a forked child
    _, grad = _run(x, w, g)
    queue.put(float(np.abs(grad - (x.T @ g).T).max()))


def test_threaded_gradient_works_in_a_forked_child() -> None:
    """The thread pool used by the parent must not be inherited, dead, by a forked worker (it would hang).

    (PyTorch's own parallel kernels hang in a forked child once the parent has used them; that is
    PyTorch's limitation, so the child keeps its forward in scipy and only the gradient uses threads.)
    """
    x, w, g = _problem()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _run(x, w, g)  # start the pool in the parent
    finally:
        torch.set_num_threads(before)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    proc.join(timeout=60)
    assert proc.exitcode == 0, "forked child hung or failed"
    assert queue.get(timeout=5) < 1e-3
