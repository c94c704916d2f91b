"""The Lion sign-correlation constant from c's impulse response (shared by the Lion tests)."""
import numpy as np


def impulse(b1, b2, J=60000, weights=None):
    """(Var c, K_eff) from the impulse response of c = b1 m + (1 - b1) g, h_0 = 1 - b1,
    h_j = b1 (1 - b2) b2^(j-1) (autocovariance by FFT; arcsine law for the sign correlations);
    ``weights(k)`` multiplies lag k (default 1)."""
    j = np.arange(J, dtype=float)
    h = np.where(j == 0, 1 - b1, b1 * (1 - b2) * b2 ** np.maximum(j - 1, 0))
    n = 1 << int(np.ceil(np.log2(2 * J)))
    H = np.fft.rfft(h, n)
    acov = np.fft.irfft(H * np.conj(H), n)[:J]
    rho = np.clip(acov[1:] / acov[0], -1, 1)
    w = np.ones(J - 1) if weights is None else weights(np.arange(1, J))
    return acov[0], 1 + 2 * np.sum(w * (2 / np.pi) * np.arcsin(rho))
