/* ULW-SleepNet (DESIGN §2.2) forward pass, one 30-s epoch [4, 3000] at a time, fp32 or int8.
 *
 * Why hand-written: onnxruntime and LiteRT run this 13K-parameter net at 400-740 us an epoch on one
 * x86 core (1-D convolutions with 1-32 channels hit their slow generic kernels; onnxruntime's
 * MaxPool alone is ~150 us), while the work is 2.6 M multiply-adds. Here each DSSC stage is one
 * pass over time: depthwise k3 -> pointwise (BatchNorm folded) -> max-pool 2 -> ReLU, with the
 * shortcut (two stride-2 1x1 separable convs, linear, folded into one 1x1 conv on x[::4]) added
 * in the same pass; activations are time-major [t][channel] so that 8-32 channels fill 1-4
 * vectors. GCC/Clang vector types: AVX2 on x86 with -march=native, NEON on arm64.
 *
 * int8 (edge/models/ulw_numpy.py is the reference and documents the scheme): the five pointwise
 * convolutions with more than one input channel multiply int8 weights (a scale per output
 * channel) by the depthwise output quantised to int8 with one scale per epoch, channel and layer
 * (its max |d| / 127, found in a first pass over the layer), accumulating in int32. With VNNI
 * one vpdpbusd does 8 outputs x 4 inputs (activations offset to u8, the offset subtracted after);
 * on AVX2 pairs of int8 values sit in 16-bit lanes, vpmaddwd + vpaddd doing 8 outputs x 2 inputs;
 * other targets use a plain loop the compiler vectorises (see acc_group).
 *
 * Weights: one float32 array packed by export/ulw_native.py (layout in forward() and BLOCK()).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "vec.h"
#if defined(__AVX2__)
#include <immintrin.h>
#endif

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

/* out[u] = best (pooled, ReLU'd) + the shortcut WS^T sx[4u] + bS when there is one */
INLINE void finish(v8 *best, int u, float *out, const float *sx, const float *WS, const float *bS,
                   const int COUT, const int SCIN) {
    const int NV = COUT / 8;
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
        finish(best, u, out, sx, WS, bS, COUT, SCIN);
    }
}

/* ---- int8 pointwise convolutions (scheme in the header comment) ---- */

INLINE v8 vabs(v8 a) { return (v8)((v8i)a & (v8i){~0u >> 1, ~0u >> 1, ~0u >> 1, ~0u >> 1,
                                                   ~0u >> 1, ~0u >> 1, ~0u >> 1, ~0u >> 1}); }
INLINE float hmax(v8 v) {
    float m = v[0];
    for (int i = 1; i < 8; i++) m = v[i] > m ? v[i] : m;
    return m;
}

/* int32 accumulators of 8 output channels. acc_group adds the dot product of GROUP activations
   q[0..GROUP) with lane j's GROUP weights w[GROUP*j ..] to lane j:
   - VNNI (AVX-VNNI or AVX512-VNNI + VL): GROUP 4, activations offset to u8 (q + 128), weights
     s8, one vpdpbusd; the offset's 128 * sum(w) is subtracted per output channel (corr);
   - AVX2: GROUP 2, s16 pairs, vpmaddwd + vpaddd (u8 x s8 vpmaddubsw would saturate in s16);
   - elsewhere: GROUP 2 in a plain loop the compiler vectorises. */
#if defined(__AVX2__) && (defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__)))
#define GROUP 4
#define ACT_OFFSET 128
typedef uint8_t act_t;
typedef int8_t wq_t;
typedef uint8_t act8 __attribute__((vector_size(8)));
#else
#define GROUP 2
#define ACT_OFFSET 0
typedef int16_t act_t;
typedef int16_t wq_t;
typedef int16_t act8 __attribute__((vector_size(16)));
#endif

#if defined(__AVX2__)
typedef __m256i acc8;
INLINE acc8 acc_zero(void) { return _mm256_setzero_si256(); }
INLINE acc8 acc_group(acc8 acc, const act_t *q, const wq_t *w) {
    int32_t packed;
    memcpy(&packed, q, sizeof packed); /* GROUP activations = 4 bytes either way */
    const __m256i a = _mm256_set1_epi32(packed), b = _mm256_loadu_si256((const __m256i *)w);
#if GROUP == 4 && defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, a, b);
#elif GROUP == 4
    return _mm256_dpbusd_avx_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}
INLINE acc8 acc_sub(acc8 acc, const int32_t *c) {
    return _mm256_sub_epi32(acc, _mm256_loadu_si256((const __m256i *)c));
}
INLINE v8 acc_float(acc8 acc) { return (v8)_mm256_cvtepi32_ps(acc); }
#else
typedef v8i acc8;
INLINE acc8 acc_zero(void) { return (v8i){0}; }
INLINE acc8 acc_group(acc8 acc, const act_t *q, const wq_t *w) {
    for (int j = 0; j < 8; j++)
        for (int k = 0; k < GROUP; k++) acc[j] += (int)q[k] * (int)w[GROUP * j + k];
    return acc;
}
INLINE acc8 acc_sub(acc8 acc, const int32_t *c) {
    for (int j = 0; j < 8; j++) acc[j] -= c[j];
    return acc;
}
INLINE v8 acc_float(acc8 acc) { return __builtin_convertvector(acc, v8); }
#endif

/* q = round half away from zero (d * inv) + ACT_OFFSET, C values (C a multiple of 8) */
INLINE void quantize(const float *d, act_t *q, float inv, const int C) {
    for (int i = 0; i < C; i += 8) {
        v8 v = ld(d + i);
        v8 y = v * bc(inv) + sel(v < bc(0.0f), bc(-0.5f), bc(0.5f));
        v8i n = __builtin_convertvector(vmin(vmax(y, bc(-127.0f)), bc(127.0f)), v8i);
        act8 h = __builtin_convertvector(n + ACT_OFFSET, act8);
        memcpy(q + i, &h, sizeof h);
    }
}

/* as stage(), with the pointwise on int8: Wq [CIN/GROUP][COUT][GROUP] int8 values, corr [COUT]
   the activation offset's share of the sums, ws [COUT] the weight scales; D [L][CIN] scratch for
   the depthwise output, whose max |.| sets this layer's activation scale */
INLINE void stage_int8(const float *x, int L, const float *dw, const wq_t *Wq, const int32_t *corr,
                       const float *ws, const float *b, float *out, const float *sx, const float *WS,
                       const float *bS, const int CIN, const int COUT, const int SCIN, float *D) {
    const int NV = COUT / 8;
    const int Lo = (L + 1) / 2;
    v8 m = bc(0.0f);
    for (int t = 0; t < L; t++) {
        depthwise(x, L, t, dw, D + t * CIN, CIN);
        for (int i = 0; i < CIN; i += 8) m = vmax(m, vabs(ld(D + t * CIN + i)));
    }
    const float mx = hmax(m), inv = mx > 0.0f ? 127.0f / mx : 0.0f, as = mx / 127.0f;
    v8 sc[4];
    for (int o = 0; o < NV; o++) sc[o] = ld(ws + 8 * o) * bc(as);
    act_t q0[CIN > 8 ? CIN : 8] __attribute__((aligned(32)));
    act_t q1[CIN > 8 ? CIN : 8] __attribute__((aligned(32)));
    for (int u = 0; u < Lo; u++) {
        /* both times of the pooling pair at once: independent accumulator chains, one weight load */
        quantize(D + 2 * u * CIN, q0, inv, CIN);
        quantize(D + (2 * u + 1 < L ? 2 * u + 1 : L - 1) * CIN, q1, inv, CIN);
        acc8 acc0[4], acc1[4];
        for (int o = 0; o < NV; o++) acc0[o] = acc1[o] = acc_zero();
        for (int g = 0; g < CIN / GROUP; g++)
            for (int o = 0; o < NV; o++) {
                const wq_t *w = Wq + GROUP * (g * COUT + 8 * o);
                acc0[o] = acc_group(acc0[o], q0 + GROUP * g, w);
                acc1[o] = acc_group(acc1[o], q1 + GROUP * g, w);
            }
        v8 best[4];
        for (int o = 0; o < NV; o++) {
            v8 bias = ld(b + 8 * o);
            if (ACT_OFFSET) {
                acc0[o] = acc_sub(acc0[o], corr + 8 * o);
                acc1[o] = acc_sub(acc1[o], corr + 8 * o);
            }
            best[o] = relu(vmax(acc_float(acc0[o]) * sc[o] + bias, acc_float(acc1[o]) * sc[o] + bias));
        }
        finish(best, u, out, sx, WS, bS, COUT, SCIN);
    }
}

/* one block: weights dwA[3][CIN] WA[CIN][COUT] bA[COUT] dwB[3][COUT] WB[COUT][COUT] bB[COUT]
   WS[CIN][COUT] bS[COUT]; returns the weight pointer after the block. With q (int8), the
   pointwise convolutions with CIN > 1 take their weights from *q->w and scales from *q->s, and
   advance both. */
struct int8_weights {
    const wq_t *w;
    const int32_t *corr;
    const float *s;
    float *D;
};
#define BLOCK(NAME, CIN, COUT)                                                                   \
    static const float *NAME(const float *w, const float *x, int L, float *mid, float *out,     \
                             struct int8_weights *q) {                                          \
        const float *dwA = w, *WA = dwA + 3 * CIN, *bA = WA + CIN * COUT;                        \
        const float *dwB = bA + COUT, *WB = dwB + 3 * COUT, *bB = WB + COUT * COUT;              \
        const float *WS = bB + COUT, *bS = WS + CIN * COUT;                                      \
        if (!q) {                                                                                \
            stage(x, L, dwA, WA, bA, mid, NULL, NULL, NULL, CIN, COUT, 1);                       \
            stage(mid, (L + 1) / 2, dwB, WB, bB, out, x, WS, bS, COUT, COUT, CIN);               \
            return bS + COUT;                                                                    \
        }                                                                                        \
        if (CIN == 1) {                                                                          \
            stage(x, L, dwA, WA, bA, mid, NULL, NULL, NULL, CIN, COUT, 1);                       \
        } else {                                                                                 \
            stage_int8(x, L, dwA, q->w, q->corr, q->s, bA, mid, NULL, NULL, NULL, CIN, COUT, 1,  \
                       q->D);                                                                    \
            q->w += CIN * COUT, q->corr += COUT, q->s += COUT;                                   \
        }                                                                                        \
        stage_int8(mid, (L + 1) / 2, dwB, q->w, q->corr, q->s, bB, out, x, WS, bS, COUT, COUT,   \
                   CIN, q->D);                                                                   \
        q->w += COUT * COUT, q->corr += COUT, q->s += COUT;                                      \
        return bS + COUT;                                                                        \
    }
BLOCK(block1, 1, 8)
BLOCK(block2, 8, 16)
BLOCK(block3, 16, 32)

#define NCH 4
#define T 3000
#define NCLS 5
#define WORK_FLOATS (3000 + 1500 * 8 + 750 * 8 + 375 * 16 + 188 * 16 + 94 * 32 + 47 * 32)
/* int8 extra: the depthwise output of the largest layer, then the int16 weight pairs */
#define INT8_D_FLOATS (1500 * 8)
#define INT8_WEIGHTS (8 * 8 + 8 * 16 + 16 * 16 + 16 * 32 + 32 * 32)
#define INT8_SCALES (8 + 16 + 16 + 32 + 32)
/* int8 extra after INT8_D_FLOATS: the weights (at most 2 bytes each) and the offset corrections */
#define WORK_INT8_FLOATS (WORK_FLOATS + INT8_D_FLOATS + INT8_WEIGHTS / 2 + INT8_SCALES)

static Py_ssize_t weight_count(void) {
    Py_ssize_t n = NCH; /* input scale */
    int ch[4] = {1, 8, 16, 32};
    for (int k = 0; k < 3; k++) {
        int ci = ch[k], co = ch[k + 1];
        n += 3 * ci + ci * co + co + 3 * co + co * co + co + ci * co + co;
    }
    return n + NCLS * NCH * 32 + NCLS;
}

/* the int8 pointwise weights (integer values in the float array) as [CIN/GROUP][COUT][GROUP] wq_t,
   and per output channel ACT_OFFSET * sum of its weights (what the activation offset adds) */
static void pack_int8(const float *w, wq_t *wq, int32_t *corr) {
    int ch[4] = {1, 8, 16, 32};
    const float *p = w + NCH;
    for (int k = 0; k < 3; k++) {
        int ci = ch[k], co = ch[k + 1];
        const float *WA = p + 3 * ci, *WB = WA + ci * co + co + 3 * co;
        const float *mats[2] = {WA, WB};
        int cins[2] = {ci, co};
        for (int m = ci == 1 ? 1 : 0; m < 2; m++) {
            for (int o = 0; o < co; o++) corr[o] = 0;
            for (int i = 0; i < cins[m]; i++)
                for (int o = 0; o < co; o++) {
                    int v = (int)mats[m][i * co + o];
                    wq[GROUP * ((i / GROUP) * co + o) + i % GROUP] = (wq_t)v;
                    corr[o] += ACT_OFFSET * v;
                }
            wq += cins[m] * co, corr += co;
        }
        p += 3 * ci + ci * co + co + 3 * co + co * co + co + ci * co + co;
    }
}

static void forward(const float *w, const float *x, float *logits, float *work, Py_ssize_t n,
                    int int8) {
    float *x0 = work, *a1 = x0 + T, *y1 = a1 + 1500 * 8, *a2 = y1 + 750 * 8, *y2 = a2 + 375 * 16;
    float *a3 = y2 + 188 * 16, *y3 = a3 + 94 * 32;
    const float *scale = w, *blocks = w + NCH;
    const float *hw = w + weight_count() - (NCLS * NCH * 32 + NCLS), *hb = hw + NCLS * NCH * 32;
    int32_t *corr = (int32_t *)(work + WORK_FLOATS + INT8_D_FLOATS);
    wq_t *wq = (wq_t *)(corr + INT8_SCALES);
    if (int8) pack_int8(w, wq, corr);
    for (Py_ssize_t e = 0; e < n; e++) {
        float feat[NCH * 32];
        for (int c = 0; c < NCH; c++) {
            const float *xc = x + (e * NCH + c) * T;
            for (int t = 0; t < T; t++) x0[t] = xc[t] * scale[c];
            struct int8_weights q = {wq, corr, w + weight_count(), work + WORK_FLOATS};
            struct int8_weights *qp = int8 ? &q : NULL;
            const float *p = block1(blocks, x0, T, a1, y1, qp);
            p = block2(p, y1, 750, a2, y2, qp);
            block3(p, y2, 188, a3, y3, qp);
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

static PyObject *run(PyObject *args, int int8) {
    Py_buffer w, x, out, work;
    if (!PyArg_ParseTuple(args, "y*y*w*w*", &w, &x, &out, &work)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = x.len / (Py_ssize_t)(sizeof(float) * NCH * T);
    Py_ssize_t want_w = (weight_count() + (int8 ? INT8_SCALES : 0)) * (Py_ssize_t)sizeof(float);
    Py_ssize_t want_work = (int8 ? WORK_INT8_FLOATS : WORK_FLOATS) * (Py_ssize_t)sizeof(float);
    if (w.len != want_w) {
        PyErr_Format(PyExc_ValueError, "weights: %zd bytes, want %zd", w.len, want_w);
    } else if (x.len != n * (Py_ssize_t)(sizeof(float) * NCH * T)) {
        PyErr_SetString(PyExc_ValueError, "epochs: not a whole number of [4, 3000] float32 epochs");
    } else if (out.len != n * (Py_ssize_t)(sizeof(float) * NCLS)) {
        PyErr_SetString(PyExc_ValueError, "logits: want n x 5 float32");
    } else if (work.len < want_work) {
        PyErr_SetString(PyExc_ValueError, "work buffer too small");
    } else {
        Py_BEGIN_ALLOW_THREADS
        forward(w.buf, x.buf, out.buf, work.buf, n, int8);
        Py_END_ALLOW_THREADS
        result = Py_NewRef(Py_None);
    }
    PyBuffer_Release(&w);
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    PyBuffer_Release(&work);
    return result;
}

static PyObject *py_forward(PyObject *self, PyObject *args) { return run(args, 0); }
static PyObject *py_forward_int8(PyObject *self, PyObject *args) { return run(args, 1); }

static PyMethodDef methods[] = {
    {"forward", py_forward, METH_VARARGS, "forward(weights, epochs, logits_out, work): fp32"},
    {"forward_int8", py_forward_int8, METH_VARARGS,
     "forward_int8(weights, epochs, logits_out, work): int8 pointwise convolutions"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ulw_sleepnet", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ulw_sleepnet(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    PyModule_AddIntConstant(m, "WEIGHT_COUNT", (long)weight_count());
    PyModule_AddIntConstant(m, "INT8_SCALES", INT8_SCALES);
    PyModule_AddIntConstant(m, "WORK_FLOATS", WORK_FLOATS);
    PyModule_AddIntConstant(m, "WORK_INT8_FLOATS", WORK_INT8_FLOATS);
    PyModule_AddIntConstant(m, "CHANNELS", NCH);
    PyModule_AddIntConstant(m, "SAMPLES", T);
    PyModule_AddIntConstant(m, "CLASSES", NCLS);
    return m;
}
