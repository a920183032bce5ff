/* The causal Mamba's layers and head (DESIGN §2.1), one second of many streams per call.
 *
 * Why hand-written: at B = 1,024 streams the runtimes spend 3.6-5.5 us a stream-step, most of it
 * in the selective scan's element-wise work (seven passes over [B, 20, 16] per layer, each a
 * kernel launch over memory) and in dispatch. Here each stream's three layers and head run in
 * one pass with its state read and written once; the scan keeps a row of h in registers (2
 * vectors of 8 over d_state) and computes exp with a vectorised Cephes polynomial (relative
 * error <= 2e-7). The pre-MLP (35 K of the 39 K multiply-adds) stays in BLAS, over all streams at
 * once, where it runs near peak (edge/models/native_step.py).
 *
 * Weights: one float32 array packed by edge/models/native_step.py (layout: LAYER_FLOATS below).
 * Shapes are fixed: d_model 10, d_inner 20 (padded to 24), d_state 16, d_conv 4, dt_rank 1.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#include "vec.h"

INLINE float hsum(v8 v) {
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

/* e^x, Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, 2^n by exponent bits */
INLINE v8 vexp(v8 x) {
    x = vmin(vmax(x, bc(-87.0f)), bc(88.0f));
    const v8 magic = bc(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    v8 t = x * bc(1.44269504088896341f) + magic;
    v8 n = t - magic;
    v8i ni = (v8i)t - (v8i)magic;
    v8 r = x - n * bc(0.693359375f) + n * bc(2.12194440e-4f);
    v8 p = bc(1.9875691500e-4f);
    p = p * r + bc(1.3981999507e-3f);
    p = p * r + bc(8.3334519073e-3f);
    p = p * r + bc(4.1665795894e-2f);
    p = p * r + bc(1.6666665459e-1f);
    p = p * r + bc(5.0000001201e-1f);
    p = p * (r * r) + r + bc(1.0f);
    return p * (v8)((ni + 127) << 23);
}

/* ln(y) for y in [1, 2] (what softplus needs), Cephes logf on [sqrt(1/2), sqrt(2)) */
INLINE v8 vlog12(v8 y) {
    v8i big = y > bc(1.41421356237f);
    v8 x = sel(big, y * bc(0.5f), y) - bc(1.0f);
    v8 e = sel(big, bc(1.0f), bc(0.0f));
    v8 z = x * x;
    v8 p = bc(7.0376836292e-2f);
    p = p * x - bc(1.1514610310e-1f);
    p = p * x + bc(1.1676998740e-1f);
    p = p * x - bc(1.2420140846e-1f);
    p = p * x + bc(1.4249322787e-1f);
    p = p * x - bc(1.6668057665e-1f);
    p = p * x + bc(2.0000714765e-1f);
    p = p * x - bc(2.4999993993e-1f);
    p = p * x + bc(3.3333331174e-1f);
    v8 r = p * x * z - e * bc(2.12194440e-4f) - bc(0.5f) * z;
    return x + r + e * bc(0.693359375f);
}

INLINE v8 silu(v8 v) { return v / (bc(1.0f) + vexp(-v)); }
INLINE v8 softplus(v8 v) { /* max(v, 0) + log(1 + e^-|v|) */
    v8 a = vmax(v, -v);
    return vmax(v, bc(0.0f)) + vlog12(bc(1.0f) + vexp(-a));
}

#define DM 10    /* d_model */
#define DI 20    /* d_inner */
#define DP 24    /* d_inner padded to whole vectors */
#define NS 16    /* d_state */
#define KC 3     /* d_conv - 1: the window kept in the state */
#define NL 3     /* layers */
#define EPS 1e-5f
/* per layer: w_in[DM][2*DP] (u | z, RMSNorm weight folded), conv_w[KC+1][DP], conv_b[DP],
   x_dt[DP], x_b[DI][NS], x_c[DI][NS], dt_w[DP], dt_b[DP], a[DI][NS] (= -exp(A_log)), d[DP],
   w_out[DI][16] (d_model padded to 16) */
#define LAYER_FLOATS (DM * 2 * DP + (KC + 1) * DP + DP + DP + 2 * DI * NS + 2 * DP + DI * NS + \
                      DP + DI * 16)

INLINE void rms(const float *x, float *out) {
    float ms = 0.0f;
    for (int i = 0; i < DM; i++) ms += x[i] * x[i];
    float r = 1.0f / sqrtf(ms / DM + EPS);
    for (int i = 0; i < DM; i++) out[i] = x[i] * r;
}

/* one layer of one stream: residual x [16] in place; state conv [DI][KC], h [DI][NS] read from
   conv_in / h_in and written to conv_out / h_out (which may be the same arrays) */
INLINE void layer(const float *w, float *x, const float *conv_in, const float *h_in,
                  float *conv_out, float *h_out) {
    const float *w_in = w, *conv_w = w_in + DM * 2 * DP, *conv_b = conv_w + (KC + 1) * DP;
    const float *x_dt = conv_b + DP, *x_b = x_dt + DP, *x_c = x_b + DI * NS;
    const float *dt_w = x_c + DI * NS, *dt_b = dt_w + DP, *a = dt_b + DP, *dd = a + DI * NS;
    const float *w_out = dd + DP;
    float xn[DM];
    rms(x, xn);
    v8 uz[6];
    for (int j = 0; j < 6; j++) uz[j] = bc(0.0f);
    for (int i = 0; i < DM; i++) {
        v8 s = bc(xn[i]);
        for (int j = 0; j < 6; j++) uz[j] += s * ld(w_in + i * 2 * DP + 8 * j);
    }
    float u[DP] __attribute__((aligned(32)));
    for (int j = 0; j < 3; j++) st(u + 8 * j, uz[j]);
    /* causal depthwise conv over the window [conv state (oldest first), u] */
    float cv[DP] __attribute__((aligned(32)));
    for (int d = 0; d < DI; d++) {
        const float *c = conv_in + d * KC;
        float *co = conv_out + d * KC;
        float s = conv_w[KC * DP + d] * u[d];
        for (int k = 0; k < KC; k++) s += conv_w[k * DP + d] * c[k];
        cv[d] = s;
        for (int k = 0; k < KC - 1; k++) co[k] = c[k + 1];
        co[KC - 1] = u[d];
    }
    for (int d = DI; d < DP; d++) cv[d] = 0.0f;
    float uc[DP] __attribute__((aligned(32))), du[DP] __attribute__((aligned(32)));
    float delta[DP] __attribute__((aligned(32)));
    v8 dt_acc = bc(0.0f);
    for (int j = 0; j < 3; j++) {
        v8 v = silu(ld(cv + 8 * j) + ld(conv_b + 8 * j));
        st(uc + 8 * j, v);
        dt_acc += v * ld(x_dt + 8 * j);
    }
    float dt_raw = hsum(dt_acc);
    v8 bm[2] = {bc(0.0f), bc(0.0f)}, cm[2] = {bc(0.0f), bc(0.0f)};
    for (int d = 0; d < DI; d++) {
        v8 s = bc(uc[d]);
        for (int k = 0; k < 2; k++) {
            bm[k] += s * ld(x_b + d * NS + 8 * k);
            cm[k] += s * ld(x_c + d * NS + 8 * k);
        }
    }
    for (int j = 0; j < 3; j++) {
        v8 dl = softplus(bc(dt_raw) * ld(dt_w + 8 * j) + ld(dt_b + 8 * j));
        st(delta + 8 * j, dl);
        st(du + 8 * j, dl * ld(uc + 8 * j));
    }
    /* the selective scan: h = exp(delta A) h + delta u B;  y = <h, C> + D u */
    float y[DP] __attribute__((aligned(32)));
    for (int d = 0; d < DI; d++) {
        v8 dl = bc(delta[d]), ud = bc(du[d]), acc = bc(0.0f);
        for (int k = 0; k < 2; k++) {
            v8 hn = vexp(dl * ld(a + d * NS + 8 * k)) * ld(h_in + d * NS + 8 * k) + ud * bm[k];
            st(h_out + d * NS + 8 * k, hn);
            acc += hn * cm[k];
        }
        y[d] = hsum(acc);
    }
    for (int d = DI; d < DP; d++) y[d] = 0.0f;
    float g[DP] __attribute__((aligned(32)));
    for (int j = 0; j < 3; j++)
        st(g + 8 * j, (ld(y + 8 * j) + ld(uc + 8 * j) * ld(dd + 8 * j)) * silu(uz[3 + j]));
    v8 o0 = ld(x), o1 = ld(x + 8);
    for (int d = 0; d < DI; d++) {
        v8 s = bc(g[d]);
        o0 += s * ld(w_out + d * 16);
        o1 += s * ld(w_out + d * 16 + 8);
    }
    st(x, o0);
    st(x + 8, o1);
}

/* rows of pre-MLP output [n][DM] -> logits [n][k]; states [NL][DI][KC] and [NL][DI][NS] per
   row. per_row: row i steps state row i (in -> out). Else the rows are one stream's consecutive
   seconds: state row 0 is copied to out and carried there from second to second. */
static void run(const float *w, const float *pre, Py_ssize_t n, int k, const float *conv_in,
                const float *h_in, float *conv_out, float *h_out, float *logits, int per_row) {
    const float *head = w + NL * LAYER_FLOATS, *head_b = head + DM * k;
    const Py_ssize_t cs = NL * DI * KC, hs = NL * DI * NS;
    if (!per_row && n > 0) {
        memmove(conv_out, conv_in, cs * sizeof(float));
        memmove(h_out, h_in, hs * sizeof(float));
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        float x[16] __attribute__((aligned(32))) = {0};
        memcpy(x, pre + i * DM, DM * sizeof(float));
        Py_ssize_t s = per_row ? i : 0;
        const float *ci = per_row ? conv_in + s * cs : conv_out, *hi = per_row ? h_in + s * hs : h_out;
        for (int l = 0; l < NL; l++)
            layer(w + l * LAYER_FLOATS, x, ci + l * DI * KC, hi + l * DI * NS,
                  conv_out + s * cs + l * DI * KC, h_out + s * hs + l * DI * NS);
        float xn[DM];
        rms(x, xn);
        for (int c = 0; c < k; c++) {
            float z = head_b[c];
            for (int j = 0; j < DM; j++) z += xn[j] * head[j * k + c];
            logits[i * k + c] = z;
        }
    }
}

static PyObject *py_run(PyObject *self, PyObject *args) {
    Py_buffer w, pre, conv, h, conv_out, h_out, logits;
    int k, per_row;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*w*w*ip", &w, &pre, &conv, &h, &conv_out, &h_out,
                          &logits, &k, &per_row))
        return NULL;
    PyObject *result = NULL;
    const Py_ssize_t f = sizeof(float), n = pre.len / (DM * f);
    const Py_ssize_t states = per_row ? n : 1, cb = NL * DI * KC * f, hb = NL * DI * NS * f;
    if (k < 1 || w.len != (NL * LAYER_FLOATS + DM * k + k) * f) {
        PyErr_SetString(PyExc_ValueError, "weights: not this kernel's packed Mamba layers");
    } else if (pre.len != n * DM * f || logits.len != n * k * f) {
        PyErr_SetString(PyExc_ValueError, "pre [n, 10] and logits [n, k] float32 expected");
    } else if (conv.len != states * cb || h.len != states * hb || conv_out.len != conv.len ||
               h_out.len != h.len) {
        PyErr_SetString(PyExc_ValueError, "state: conv [.., 3, 20, 3] and h [.., 3, 20, 16]");
    } else {
        Py_BEGIN_ALLOW_THREADS
        run(w.buf, pre.buf, n, k, conv.buf, h.buf, conv_out.buf, h_out.buf, logits.buf, per_row);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&pre);
    PyBuffer_Release(&conv);
    PyBuffer_Release(&h);
    PyBuffer_Release(&conv_out);
    PyBuffer_Release(&h_out);
    PyBuffer_Release(&logits);
    return result;
}

static PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS,
     "run(weights, pre, conv, h, conv_out, h_out, logits, classes, per_row): layers + head"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_mamba_step", NULL, -1, methods};

PyMODINIT_FUNC PyInit__mamba_step(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    PyModule_AddIntConstant(m, "LAYER_FLOATS", LAYER_FLOATS);
    return m;
}
