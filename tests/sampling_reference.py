"""Reference samplers and schedules written from the published formulas (Karras et al. 2022, DPM-Solver(++),
LMS, DDIM/PLMS, A1111's schedule definitions) in float64 with Python-float step coefficients, independently of
creationmix.sampling's line-by-line ports. The implementation runs in float32, so the two agree to float32
rounding (~1e-6), not bit for bit; the tests state their tolerance.

Samplers take `D(x, sigma) -> denoised` on float64 tensors, a list of sigmas as Python floats, `noise()` for
ancestral noise and `bnoise(s, s_next)` for SDE noise (the same draws are fed to the implementation).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from scipy import stats


# -- schedules --------------------------------------------------------------------------------------------------
def karras(n, smin, smax, rho=7.0):
    return [(smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
            for i in range(n)] + [0.0]


def exponential(n, smin, smax):
    return [math.exp(math.log(smax) + i / (n - 1) * (math.log(smin) - math.log(smax))) for i in range(n)] + [0.0]


def polyexponential(n, smin, smax, rho=1.0):
    return [math.exp((1 - i / (n - 1)) ** rho * (math.log(smax) - math.log(smin)) + math.log(smin))
            for i in range(n)] + [0.0]


def t_to_sigma(table, t):
    log = np.log(np.asarray(table, dtype=np.float64))
    lo, hi = math.floor(t), math.ceil(t)
    w = t - lo
    return math.exp((1 - w) * log[lo] + w * log[hi])


def sigma_to_t(table, sigma):
    log = np.log(np.asarray(table, dtype=np.float64))
    ls = math.log(sigma)
    i = min(int(np.searchsorted(log, ls, side="right")) - 1, len(log) - 2)
    i = max(i, 0)
    w = min(max((log[i] - ls) / (log[i] - log[i + 1]), 0.0), 1.0)
    return (1 - w) * i + w * (i + 1)


def uniform(n, table):
    return [t_to_sigma(table, (len(table) - 1) * (1 - i / (n - 1)) if n > 1 else len(table) - 1)
            for i in range(n)] + [0.0]


def sgm_uniform(n, table, smin, smax):
    a, b = sigma_to_t(table, smax), sigma_to_t(table, smin)
    return [t_to_sigma(table, a + (b - a) * i / n) for i in range(n)] + [0.0]


def normal(n, table, smin, smax):
    a, b = sigma_to_t(table, smax), sigma_to_t(table, smin)
    return [t_to_sigma(table, a + (b - a) * i / (n - 1) if n > 1 else a) for i in range(n)] + [0.0]


def kl_optimal(n, smin, smax):
    amin, amax = math.atan(smin), math.atan(smax)
    return [math.tan(i / n * amin + (1 - i / n) * amax) for i in range(n + 1)]


AYS = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]


def align_your_steps(n):
    if n == len(AYS):
        return AYS + [0.0]
    logs = np.log(AYS[::-1])
    xs = np.linspace(0, 1, len(AYS))
    out = [math.exp(np.interp(i / (n - 1), xs, logs)) for i in range(n)]
    return out[::-1] + [0.0]


def simple(n, table):
    return [float(table[len(table) - 1 - int(i * len(table) / n)]) for i in range(n)] + [0.0]


def ddim_schedule(n, table):
    step = max(len(table) // n, 1)
    return [float(table[i]) for i in range(1, len(table), step)][::-1] + [0.0]


def beta(n, smin, smax, a=0.6, b=0.6):
    return [smin + stats.beta.ppf(1 - i / (n - 1), a, b) * (smax - smin) for i in range(n)] + [0.0]


# -- k-diffusion samplers ---------------------------------------------------------------------------------------
def _anc(s, s_next, eta=1.0):
    if not eta:
        return s_next, 0.0
    up = min(s_next, eta * math.sqrt(s_next ** 2 * (s ** 2 - s_next ** 2) / s ** 2))
    return math.sqrt(s_next ** 2 - up ** 2), up


def euler(D, x, s, noise=None, churn=0.0, tmin=0.0, tmax=math.inf, snoise=1.0):
    for i in range(len(s) - 1):
        sh = s[i]
        if churn:
            gamma = min(churn / (len(s) - 1), math.sqrt(2) - 1) if tmin <= s[i] <= tmax else 0.0
            eps = noise() * snoise
            sh = s[i] * (1 + gamma)
            if gamma > 0:
                x = x + eps * math.sqrt(sh ** 2 - s[i] ** 2)
        x = x + (x - D(x, sh)) / sh * (s[i + 1] - sh)
    return x


def euler_a(D, x, s, noise, eta=1.0):
    for i in range(len(s) - 1):
        down, up = _anc(s[i], s[i + 1], eta)
        x = x + (x - D(x, s[i])) / s[i] * (down - s[i])
        if s[i + 1] > 0:
            x = x + noise() * up
    return x


def heun(D, x, s, noise=None):
    for i in range(len(s) - 1):
        d = (x - D(x, s[i])) / s[i]
        dt = s[i + 1] - s[i]
        if s[i + 1] == 0:
            x = x + d * dt
        else:
            x2 = x + d * dt
            d2 = (x2 - D(x2, s[i + 1])) / s[i + 1]
            x = x + (d + d2) / 2 * dt
    return x


def dpm2(D, x, s, noise=None):
    for i in range(len(s) - 1):
        d = (x - D(x, s[i])) / s[i]
        if s[i + 1] == 0:
            x = x + d * (s[i + 1] - s[i])
        else:
            mid = math.sqrt(s[i] * s[i + 1])
            x2 = x + d * (mid - s[i])
            x = x + (x2 - D(x2, mid)) / mid * (s[i + 1] - s[i])
    return x


def dpm2_a(D, x, s, noise, eta=1.0):
    for i in range(len(s) - 1):
        down, up = _anc(s[i], s[i + 1], eta)
        d = (x - D(x, s[i])) / s[i]
        if down == 0:
            x = x + d * (down - s[i])
        else:
            mid = math.sqrt(s[i] * down)
            x2 = x + d * (mid - s[i])
            x = x + (x2 - D(x2, mid)) / mid * (down - s[i])
            x = x + noise() * up
    return x


def _lms_coeff(order, t, i, j):
    # Lagrange basis polynomial for node j, integrated exactly over [t_i, t_{i+1}].
    nodes = [t[i - k] for k in range(order)]
    poly = np.poly1d([1.0])
    for k, node in enumerate(nodes):
        if k != j:
            poly = poly * np.poly1d([1.0, -node]) / (nodes[j] - node)
    integral = poly.integ()
    return integral(t[i + 1]) - integral(t[i])


def lms(D, x, s, noise=None, order=4):
    ds = []
    for i in range(len(s) - 1):
        ds.append((x - D(x, s[i])) / s[i])
        ds = ds[-order:]
        cur = min(i + 1, order)
        x = x + sum(_lms_coeff(cur, s, i, j) * ds[-1 - j] for j in range(cur))
    return x


def dpmpp_2s_a(D, x, s, noise, eta=1.0):
    for i in range(len(s) - 1):
        den = D(x, s[i])
        down, up = _anc(s[i], s[i + 1], eta)
        if down == 0:
            x = x + (x - den) / s[i] * (down - s[i])
        else:
            mid = math.sqrt(s[i] * down)  # half way in log sigma
            x2 = mid / s[i] * x - math.expm1(-math.log(s[i] / mid)) * den
            x = down / s[i] * x - math.expm1(-math.log(s[i] / down)) * D(x2, mid)
        if s[i + 1] > 0:
            x = x + noise() * up
    return x


def dpmpp_2m(D, x, s, noise=None):
    old = None
    for i in range(len(s) - 1):
        den = D(x, s[i])
        if old is None or s[i + 1] == 0:
            x = s[i + 1] / s[i] * x + (1 - s[i + 1] / s[i]) * den
        else:
            h = math.log(s[i] / s[i + 1])
            r = math.log(s[i - 1] / s[i]) / h
            dd = (1 + 1 / (2 * r)) * den - 1 / (2 * r) * old
            x = s[i + 1] / s[i] * x + (1 - s[i + 1] / s[i]) * dd
        old = den
    return x


def dpmpp_sde(D, x, s, bnoise, eta=1.0):
    for i in range(len(s) - 1):
        den = D(x, s[i])
        if s[i + 1] == 0:
            x = x + (x - den) / s[i] * (s[i + 1] - s[i])
            continue
        sm = math.sqrt(s[i] * s[i + 1])
        down, up = _anc(s[i], sm, eta)
        x2 = down / s[i] * x + (1 - down / s[i]) * den + bnoise(s[i], sm) * up
        dd = 0.0 * den + 1.0 * D(x2, sm)  # r = 1/2: fac = 1
        down, up = _anc(s[i], s[i + 1], eta)
        x = down / s[i] * x + (1 - down / s[i]) * dd + bnoise(s[i], s[i + 1]) * up
    return x


def dpmpp_2m_sde(D, x, s, bnoise, eta=1.0, solver="midpoint"):
    old, h_last = None, None
    for i in range(len(s) - 1):
        den = D(x, s[i])
        if s[i + 1] == 0:
            x = den
        else:
            h = math.log(s[i] / s[i + 1])
            eh = eta * h
            x = s[i + 1] / s[i] * math.exp(-eh) * x - math.expm1(-h - eh) * den
            if old is not None:
                r = h_last / h
                if solver == "heun":
                    x = x + (-math.expm1(-h - eh) / (-h - eh) + 1) / r * (den - old)
                else:
                    x = x - 0.5 * math.expm1(-h - eh) / r * (den - old)
            if eta:
                x = x + bnoise(s[i], s[i + 1]) * s[i + 1] * math.sqrt(-math.expm1(-2 * eh))
            h_last = h
        old = den
    return x


def dpmpp_3m_sde(D, x, s, bnoise, eta=1.0):
    d1 = d2 = h1 = h2 = None
    for i in range(len(s) - 1):
        den = D(x, s[i])
        h = None
        if s[i + 1] == 0:
            x = den
        else:
            h = math.log(s[i] / s[i + 1])
            he = h * (eta + 1)
            x = math.exp(-he) * x - math.expm1(-he) * den
            phi2 = math.expm1(-he) / he + 1
            if h2 is not None:
                r0, r1 = h1 / h, h2 / h
                a = (den - d1) / r0
                b = (d1 - d2) / r1
                x = x + phi2 * (a + (a - b) * r0 / (r0 + r1)) - (phi2 / he - 0.5) * ((a - b) / (r0 + r1))
            elif h1 is not None:
                x = x + phi2 * (den - d1) / (h1 / h)
            if eta:
                x = x + bnoise(s[i], s[i + 1]) * s[i + 1] * math.sqrt(-math.expm1(-2 * h * eta))
        d1, d2 = den, d1
        h1, h2 = h, h1
    return x


def lcm(D, x, s, noise):
    for i in range(len(s) - 1):
        x = D(x, s[i])
        if s[i + 1] > 0:
            x = x + s[i + 1] * noise()
    return x


def restart(D, x, s, noise):
    """A1111 Restart: below 20 steps plain Heun; from 20 a Karras grid with re-noising to sigma 2 near 0.1."""
    steps = len(s) - 1
    pairs = list(zip(s[:-1], s[1:]))
    if steps >= 20:
        rs, rt = (9, 1) if steps < 36 else (steps // 4, 2)
        grid = karras(steps - rs * rt, s[-2], s[0])
        grid = [float(np.float32(v)) for v in grid]
        at = int(np.argmin([abs(v - 0.1) for v in grid]))
        top = int(np.argmin([abs(v - 2) for v in grid]))
        pairs = []
        for i in range(len(grid) - 1):
            pairs.append((grid[i], grid[i + 1]))
            if i + 1 == at and top < at:
                r = karras(rs + 1, grid[at], grid[top])[:-1]
                pairs += list(zip(r[:-1], r[1:])) * rt
    last = None
    for old, new in pairs:
        if last is not None and last < old:
            x = x + noise() * math.sqrt(old ** 2 - last ** 2)
        x = heun(D, x, [old, new])
        last = new
    return x


# -- DPM-Solver (fast, adaptive), in lambda = -log(sigma) ------------------------------------------------------
def _eps(D, x, t):
    sigma = math.exp(-t)
    return (x - D(x, sigma)) / sigma


def _dpm_steps(D, x, t, t_next, order, cache, r1=1 / 3):
    h = t_next - t
    sn = math.exp(-t_next)
    e = cache.setdefault("e", _eps(D, x, t))
    if order == 1:
        return x - sn * math.expm1(h) * e
    if order == 2:
        s1 = t + r1 * h
        u1 = x - math.exp(-s1) * math.expm1(r1 * h) * e
        e1 = cache.setdefault("e1", _eps(D, u1, s1))
        return x - sn * math.expm1(h) * e - sn / (2 * r1) * math.expm1(h) * (e1 - e)
    s1, s2 = t + h / 3, t + 2 * h / 3
    u1 = x - math.exp(-s1) * math.expm1(h / 3) * e
    e1 = cache.setdefault("e1", _eps(D, u1, s1))
    u2 = x - math.exp(-s2) * math.expm1(2 * h / 3) * e - math.exp(-s2) * 2 * (
        math.expm1(2 * h / 3) / (2 * h / 3) - 1) * (e1 - e)
    e2 = cache.setdefault("e2", _eps(D, u2, s2))
    return x - sn * math.expm1(h) * e - sn / (2 / 3) * (math.expm1(h) / h - 1) * (e2 - e)


def dpm_fast(D, x, smin, smax, n, noise, eta=1.0):
    t0, t1 = -math.log(smax), -math.log(smin)
    m = n // 3 + 1
    ts = [t0 + (t1 - t0) * i / m for i in range(m + 1)]
    orders = [3] * (m - 2) + [2, 1] if n % 3 == 0 else [3] * (m - 1) + [n % 3]
    for i, order in enumerate(orders):
        t, tn = ts[i], ts[i + 1]
        tn_, up = tn, 0.0
        if eta:
            down, _ = _anc(math.exp(-t), math.exp(-tn), eta)
            tn_ = min(t1, -math.log(down))
            up = math.sqrt(math.exp(-tn) ** 2 - math.exp(-tn_) ** 2)
        x = _dpm_steps(D, x, t, tn_, order, {}, r1=1 / 2)
        if eta:
            x = x + up * noise()
    return x


def dpm_adaptive(D, x, smin, smax, noise, eta=1.0, rtol=0.05, atol=0.0078, h=0.05):
    t0, t1 = -math.log(smax), -math.log(smin)
    s, x_prev, errs = t0, x, None
    b1 = 1 / (1.5 if eta else 3)
    while s < t1 - 1e-5:
        t = min(t1, s + h)
        t_, up = t, 0.0
        if eta:
            down, _ = _anc(math.exp(-s), math.exp(-t), eta)
            t_ = min(t1, -math.log(down))
            up = math.sqrt(math.exp(-t) ** 2 - math.exp(-t_) ** 2)
        cache = {}
        low = _dpm_steps(D, x, s, t_, 2, cache, r1=1 / 3)
        high = _dpm_steps(D, x, s, t_, 3, cache)
        delta = torch.maximum(torch.tensor(atol, dtype=x.dtype), rtol * torch.maximum(low.abs(), x_prev.abs()))
        error = float(torch.linalg.norm((low - high) / delta) / x.numel() ** 0.5)
        inv = 1 / (error + 1e-8)
        errs = errs or [inv, inv, inv]
        errs[0] = inv
        factor = 1 + math.atan(errs[0] ** b1 - 1)
        if factor >= 0.81:
            errs[2], errs[1] = errs[1], errs[0]
            x_prev = low
            x = high + up * noise() if eta else high
            s = t
        h *= factor
    return x


# -- timestep samplers (DDIM, PLMS) on eps models -------------------------------------------------------------
def ddim(E, x, ts, ac, noise=None, eta=0.0, uncond=None):
    for idx in range(len(ts) - 1, 0, -1):
        a, ap = float(ac[ts[idx]]), float(ac[ts[idx - 1]])
        e = E(x, ts[idx])
        x0 = (x - math.sqrt(1 - a) * e) / math.sqrt(a)
        sig = eta * math.sqrt((1 - ap) / (1 - a) * (1 - a / ap))
        direction = uncond() if uncond is not None else e
        x = math.sqrt(ap) * x0 + math.sqrt(1 - ap - sig ** 2) * direction
        if eta:
            x = x + sig * noise()
    return x


def plms(E, x, ts, ac):
    old = []

    def step(x, e, idx):
        a, ap = float(ac[ts[idx]]), float(ac[ts[idx - 1]])
        x0 = (x - math.sqrt(1 - a) * e) / math.sqrt(a)
        return math.sqrt(ap) * x0 + math.sqrt(1 - ap) * e

    for idx in range(len(ts) - 1, 0, -1):
        e = E(x, ts[idx])
        if not old:
            e_next = E(step(x, e, idx), ts[idx - 1])
            ep = (e + e_next) / 2
        elif len(old) == 1:
            ep = (3 * e - old[-1]) / 2
        elif len(old) == 2:
            ep = (23 * e - 16 * old[-1] + 5 * old[-2]) / 12
        else:
            ep = (55 * e - 59 * old[-1] + 37 * old[-2] - 9 * old[-3]) / 24
        x = step(x, ep, idx)
        old = (old + [e])[-3:]
    return x
