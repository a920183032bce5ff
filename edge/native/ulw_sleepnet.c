/* ULW-SleepNet (DESIGN §2.2) forward pass in fp32, one 30-s epoch [4, 3000] at a time.
 *
 * Why hand-written: onnxruntime and LiteRT run this 13K-parameter net at 400-740 us an epoch on one
 * x86 core (1-D convolutions with 1-32 channels hit their slow generic kernels; onnxruntime's
 * MaxPool alone is ~150 us), while the work is 2.6 M multiply-adds. Here each DSSC stage is one
 * pass over time: depthwise k3 -> pointwise (BatchNorm folded) -> max-pool 2 -> ReLU, with the
 * shortcut (two stride-2 1x1 separable convs, linear, folded into one 1x1 conv on x[::4]) added
 * in the same pass; activations are time-major [t][channel] so that 8-32 channels fill 1-4
 * vectors. GCC/Clang vector types: AVX2 on x86 with -march=native, NEON on arm64.
 *
 * Weights: one float32 array packed by export/ulw_native.py (layout in forward() and BLOCK()).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "vec.h"

INLINE v8 relu(v8 a) { return vmax(a, bc(0.0f)); }

/* depthwise k3 'same' at time t of x [L][C] into d [C] */
INLINE void depthwise(const float *x, int L, int t, const float *dw, float *d, const int C) {
    if (C == 1) {
        float s = dw[1] * x[t];
        if (t > 0) s += dw[0] * x[t - 1];
        if (t + 1 < L) s += dw[2] * x[t + 1];
        d[0] = s;
        return;
    }
    for (int i = 0; i < C; i += 8) {
        v8 s = ld(dw + C + i) * ld(x + t * C + i);
        if (t > 0) s += ld(dw + i) * ld(x + (t - 1) * C + i);
        if (t + 1 < L) s += ld(dw + 2 * C + i) * ld(x + (t + 1) * C + i);
        st(d + i, s);
    }
}

/* relu(maxpool2,ceil(pw(dw(x)) + b)) [+ shortcut WS^T x_in[4u] + bS], x [L][CIN] -> out [ceil(L/2)][COUT] */
INLINE void stage(const float *x, int L, const float *dw, const float *W, const float *b, float *out,
                  const float *sx, const float *WS, const float *bS, const int CIN, const int COUT,
                  const int SCIN) {
    const int NV = COUT / 8;
    const int Lo = (L + 1) / 2;
    float d[CIN > 8 ? CIN : 8] __attribute__((aligned(32)));
    for (int u = 0; u < Lo; u++) {
        v8 best[4];
        for (int k = 0; k < 2; k++) {
            int t = 2 * u + k;
            if (t >= L) t = L - 1;
            depthwise(x, L, t, dw, d, CIN);
            v8 acc[4];
            for (int o = 0; o < NV; o++) acc[o] = ld(b + 8 * o);
            for (int i = 0; i < CIN; i++) {
                v8 s = bc(d[i]);
                for (int o = 0; o < NV; o++) acc[o] += s * ld(W + i * COUT + 8 * o);
            }
            for (int o = 0; o < NV; o++) best[o] = k ? vmax(best[o], acc[o]) : acc[o];
        }
        for (int o = 0; o < NV; o++) best[o] = relu(best[o]);
        if (sx) {
            const float *xs = sx + 4 * u * SCIN;
            for (int o = 0; o < NV; o++) best[o] += ld(bS + 8 * o);
            for (int i = 0; i < SCIN; i++) {
                v8 s = bc(xs[i]);
                for (int o = 0; o < NV; o++) best[o] += s * ld(WS + i * COUT + 8 * o);
            }
        }
        for (int o = 0; o < NV; o++) st(out + u * COUT + 8 * o, best[o]);
    }
}

/* one block: weights dwA[3][CIN] WA[CIN][COUT] bA[COUT] dwB[3][COUT] WB[COUT][COUT] bB[COUT]
   WS[CIN][COUT] bS[COUT]; returns the weight pointer after the block */
#define BLOCK(NAME, CIN, COUT)                                                                   \
    static const float *NAME(const float *w, const float *x, int L, float *mid, float *out) {   \
        const float *dwA = w, *WA = dwA + 3 * CIN, *bA = WA + CIN * COUT;                        \
        const float *dwB = bA + COUT, *WB = dwB + 3 * COUT, *bB = WB + COUT * COUT;              \
        const float *WS = bB + COUT, *bS = WS + CIN * COUT;                                      \
        stage(x, L, dwA, WA, bA, mid, NULL, NULL, NULL, CIN, COUT, 1);                           \
        stage(mid, (L + 1) / 2, dwB, WB, bB, out, x, WS, bS, COUT, COUT, CIN);                   \
        return bS + COUT;                                                                        \
    }
BLOCK(block1, 1, 8)
BLOCK(block2, 8, 16)
BLOCK(block3, 16, 32)

#define NCH 4
#define T 3000
#define NCLS 5
#define WORK_FLOATS (3000 + 1500 * 8 + 750 * 8 + 375 * 16 + 188 * 16 + 94 * 32 + 47 * 32)

static Py_ssize_t weight_count(void) {
    Py_ssize_t n = NCH; /* input scale */
    int ch[4] = {1, 8, 16, 32};
    for (int k = 0; k < 3; k++) {
        int ci = ch[k], co = ch[k + 1];
        n += 3 * ci + ci * co + co + 3 * co + co * co + co + ci * co + co;
    }
    return n + NCLS * NCH * 32 + NCLS;
}

static void forward(const float *w, const float *x, float *logits, float *work, Py_ssize_t n) {
    float *x0 = work, *a1 = x0 + T, *y1 = a1 + 1500 * 8, *a2 = y1 + 750 * 8, *y2 = a2 + 375 * 16;
    float *a3 = y2 + 188 * 16, *y3 = a3 + 94 * 32;
    const float *scale = w, *blocks = w + NCH;
    const float *hw = w + weight_count() - (NCLS * NCH * 32 + NCLS), *hb = hw + NCLS * NCH * 32;
    for (Py_ssize_t e = 0; e < n; e++) {
        float feat[NCH * 32];
        for (int c = 0; c < NCH; c++) {
            const float *xc = x + (e * NCH + c) * T;
            for (int t = 0; t < T; t++) x0[t] = xc[t] * scale[c];
            const float *p = block1(blocks, x0, T, a1, y1);
            p = block2(p, y1, 750, a2, y2);
            block3(p, y2, 188, a3, y3);
            v8 s[4] = {0};
            for (int u = 0; u < 47; u++)
                for (int o = 0; o < 4; o++) s[o] += ld(y3 + u * 32 + 8 * o);
            for (int o = 0; o < 4; o++) st(feat + c * 32 + 8 * o, s[o] * bc(1.0f / 47.0f));
        }
        for (int k = 0; k < NCLS; k++) {
            float z = hb[k];
            for (int j = 0; j < NCH * 32; j++) z += hw[k * NCH * 32 + j] * feat[j];
            logits[e * NCLS + k] = z;
        }
    }
}

static PyObject *py_forward(PyObject *self, PyObject *args) {
    Py_buffer w, x, out, work;
    if (!PyArg_ParseTuple(args, "y*y*w*w*", &w, &x, &out, &work)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = x.len / (Py_ssize_t)(sizeof(float) * NCH * T);
    if (w.len != weight_count() * (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "weights: %zd bytes, want %zd", w.len,
                     weight_count() * (Py_ssize_t)sizeof(float));
    } else if (x.len != n * (Py_ssize_t)(sizeof(float) * NCH * T)) {
        PyErr_SetString(PyExc_ValueError, "epochs: not a whole number of [4, 3000] float32 epochs");
    } else if (out.len != n * (Py_ssize_t)(sizeof(float) * NCLS)) {
        PyErr_SetString(PyExc_ValueError, "logits: want n x 5 float32");
    } else if (work.len < (Py_ssize_t)(sizeof(float) * WORK_FLOATS)) {
        PyErr_SetString(PyExc_ValueError, "work buffer too small");
    } else {
        Py_BEGIN_ALLOW_THREADS
        forward(w.buf, x.buf, out.buf, work.buf, n);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    PyBuffer_Release(&work);
    return result;
}

static PyMethodDef methods[] = {
    {"forward", py_forward, METH_VARARGS, "forward(weights, epochs, logits_out, work): fp32"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ulw_sleepnet", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ulw_sleepnet(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    PyModule_AddIntConstant(m, "WEIGHT_COUNT", (long)weight_count());
    PyModule_AddIntConstant(m, "WORK_FLOATS", WORK_FLOATS);
    PyModule_AddIntConstant(m, "CHANNELS", NCH);
    PyModule_AddIntConstant(m, "SAMPLES", T);
    PyModule_AddIntConstant(m, "CLASSES", NCLS);
    return m;
}
