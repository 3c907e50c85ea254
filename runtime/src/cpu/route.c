/*===- route.c - moe.route on the CPU ---------------------------*- C -*-===*
 *
 * Router logits [T, E'] to per-token expert choices and gate weights, as in
 * docs/Semantics.md §1. All arithmetic is f32 with one rounding per
 * operation; every sum is accumulated left to right in the order stated at
 * its use, so the results are reproducible bit for bit by a scalar
 * reference. Selection uses moert_ranks_before, a strict total order, so
 * the chosen experts and their slot order never depend on the algorithm.
 *
 * Readings of points docs/Semantics.md leaves open (a reference must match):
 *  - attribute doubles (scaling, top_p, threshold, epsilon, jitter_eps) are
 *    rounded to f32 once and compared / multiplied in f32;
 *  - softmax: e_i = expf(l_i - max), summed in column order, p = e_i / sum;
 *    sigmoid: 1 / (1 + expf(-l)); normalise: w / (sum in slot order + eps),
 *    then * scaling (two roundings);
 *  - softmax_selected: the threshold (and top_p) test uses the softmax
 *    over the K best candidates, the weights the softmax over the kept
 *    ones (slot-order sum); expert_choice picks by the full softmax, like
 *    a key (§1.2);
 *  - grouped_top_k without a bias: the key is p itself (p + 0 would only
 *    turn -0.0 into +0.0, which ranks the same);
 *  - grouped_top_k: a group's score adds its best keys best first, from 0;
 *  - sinkhorn: "max l" is the max over the whole batch; column step
 *    M * ((T/E') / colsum), row step M / rowsum; an all-zero column or row
 *    is left as is;
 *  - expert_choice: Ce in double, ceil(cf * T * K / E') capped at T;
 *  - sparse_mixer: a column is masked iff ratio > 2 * jitter_eps (PhiMoE's
 *    test; a 0/0 ratio keeps the column), the masked softmax sums over the
 *    unmasked columns in index order.
 *
 *===----------------------------------------------------------------------===*/

#include "expert_ffn_internal.h"
#include "kernel_util.h"

#include <stdlib.h>

/* Above this many slots a full merge sort beats insertion into the kept
 * prefix; both give the same answer. */
#define MOERT_PARTIAL_SELECT_MAX 16

typedef struct {
  int64_t policy, k, score;
  int normalize, higher_first;
  float scaling, top_p, threshold, jitter2, epsilon;
  int64_t num_groups, top_groups, group_score_k, mask_with_zero;
  int64_t sinkhorn_iterations;
  double capacity_factor;
  int64_t T, Ep, E, K; /* tokens, router columns E', real experts, slots */
  int has_bias;
} RouteParams;

/* Per-token scratch, sized for E' columns. */
typedef struct {
  float *l, *p, *key, *cand;
  int64_t *idx, *tmp, *sel, *sel2;
  float *w;
  float *gscore;
} TokenScratch;

/*===----------------------------------------------------------------------===*
 * Small pieces
 *===----------------------------------------------------------------------===*/

/* Indices of the min(n, m) best of key[0..m), best first, into out; returns
 * how many. idx and tmp hold m entries (only used for large n). */
static int64_t select_best(const float *key, int64_t m, int64_t n,
                           int higher_first, int64_t *out, int64_t *idx,
                           int64_t *tmp) {
  if (n > m)
    n = m;
  if (n <= 0)
    return 0;
  if (n > MOERT_PARTIAL_SELECT_MAX) {
    for (int64_t i = 0; i < m; ++i)
      idx[i] = i;
    moert_sort_ranked(key, idx, m, higher_first, tmp);
    memcpy(out, idx, (size_t)n * sizeof(int64_t));
    return n;
  }
  /* Insertion into the sorted prefix of the n best seen so far. */
  int64_t count = 0;
  for (int64_t i = 0; i < m; ++i) {
    if (count == n && !moert_ranks_before(key[i], i, key[out[n - 1]],
                                          out[n - 1], higher_first))
      continue;
    int64_t pos = count < n ? count++ : n - 1; /* full: evict the worst */
    while (pos > 0 && moert_ranks_before(key[i], i, key[out[pos - 1]],
                                         out[pos - 1], higher_first)) {
      out[pos] = out[pos - 1];
      --pos;
    }
    out[pos] = i;
  }
  return count;
}

/* p[e] = softmax(l)[e] over n values: m = max, e_i = exp(l_i - m), the sum
 * accumulated in index order, p_i = e_i / sum. NaN logits give NaN
 * everywhere, as the textbook formula does. */
static void softmax(const float *l, int64_t n, float *p) {
  float m = -INFINITY;
  for (int64_t i = 0; i < n; ++i)
    if (l[i] > m)
      m = l[i];
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    p[i] = expf(l[i] - m);
    s += p[i];
  }
  for (int64_t i = 0; i < n; ++i)
    p[i] = p[i] / s;
}

/* The gate probabilities of one token per `score`. softmax_selected has no
 * meaning before selection; where a policy needs a score over all columns
 * (expert_choice) it uses the full softmax, the score whose restriction to
 * the selected set softmax_selected is. */
static void compute_scores(int64_t score, const float *l, int64_t n, float *p) {
  switch (score) {
  case MOERT_SIGMOID:
    for (int64_t i = 0; i < n; ++i)
      p[i] = 1.0f / (1.0f + expf(-l[i]));
    return;
  case MOERT_IDENTITY:
    memcpy(p, l, (size_t)n * sizeof(float));
    return;
  default: /* softmax, softmax_selected */
    softmax(l, n, p);
    return;
  }
}

/* Softmax over the logits of the chosen columns sel[0..n), in slot order:
 * out[j] = exp(l[sel_j] - m) / sum, m the largest chosen logit. */
static void softmax_of(const float *l, const int64_t *sel, int64_t n,
                       float *scratch, float *out) {
  for (int64_t j = 0; j < n; ++j)
    scratch[j] = l[sel[j]];
  softmax(scratch, n, out);
}

/* §1.4 steps 2-4 for one token: normalise over the n kept slots (null
 * experts included), scale, then write; null picks and slots n..K-1 get
 * expert -1 and weight 0. */
static void finish_token(const RouteParams *rp, moert_memref_2d *weights_out,
                         moert_memref_2d *experts_out, int64_t t,
                         const int64_t *sel, float *w, int64_t n) {
  if (rp->normalize) {
    float s = 0.0f;
    for (int64_t j = 0; j < n; ++j)
      s += w[j];
    float d = s + rp->epsilon;
    for (int64_t j = 0; j < n; ++j)
      w[j] = w[j] / d;
  }
  for (int64_t j = 0; j < rp->K; ++j) {
    int used = j < n && sel[j] < rp->E;
    MOERT_F32_2D(weights_out, t, j) = used ? w[j] * rp->scaling : 0.0f;
    MOERT_I32_2D(experts_out, t, j) = used ? (int32_t)sel[j] : -1;
  }
}

static void fill_empty(const RouteParams *rp, moert_memref_2d *weights_out,
                       moert_memref_2d *experts_out) {
  for (int64_t t = 0; t < rp->T; ++t)
    finish_token(rp, weights_out, experts_out, t, NULL, NULL, 0);
}

static void load_row(const moert_memref_2d *m, int64_t t, int64_t n,
                     float *out) {
  for (int64_t e = 0; e < n; ++e)
    out[e] = MOERT_F32_2D(m, t, e);
}

/*===----------------------------------------------------------------------===*
 * Key-ranked policies: top_k, top_p, threshold, grouped_top_k
 *===----------------------------------------------------------------------===*/

/* grouped_top_k: mask the keys of every group outside the top_groups best.
 * A group's score is the sum of its group_score_k best keys, added best
 * first; groups rank by score, NaN last, ties to the lower group. */
static void mask_groups(const RouteParams *rp, TokenScratch *s) {
  int64_t G = rp->num_groups, size = rp->Ep / G;
  for (int64_t g = 0; g < G; ++g) {
    const float *gk = s->key + g * size;
    int64_t n = select_best(gk, size, rp->group_score_k, rp->higher_first,
                            s->sel2, s->idx, s->tmp);
    float sum = 0.0f;
    for (int64_t i = 0; i < n; ++i)
      sum += gk[s->sel2[i]];
    s->gscore[g] = sum;
  }
  int64_t kept = select_best(s->gscore, G, rp->top_groups, /*higher_first=*/0,
                             s->sel2, s->idx, s->tmp);
  /* sel2 now lists the kept groups; mask all others. */
  float fill = rp->mask_with_zero ? 0.0f : -INFINITY;
  for (int64_t g = 0; g < G; ++g) {
    int keep = 0;
    for (int64_t i = 0; i < kept; ++i)
      keep |= s->sel2[i] == g;
    if (!keep)
      for (int64_t e = g * size; e < (g + 1) * size; ++e)
        s->key[e] = fill;
  }
}

/* Tokens [t0, t1) of a key-ranked policy (each token on its own). */
static void route_ranked(const RouteParams *rp, moert_memref_2d *logits,
                         moert_memref_1d *bias, moert_memref_2d *weights_out,
                         moert_memref_2d *experts_out, TokenScratch *s,
                         int64_t t0, int64_t t1) {
  int64_t Ep = rp->Ep;
  int selected_softmax = rp->score == MOERT_SOFTMAX_SELECTED;
  /* Selection key (§1.2): p + b with a bias, and always a score for
   * grouped_top_k (group scores are sums of scores, as in DeepSeek);
   * otherwise the logit, which every score function preserves the order
   * of, so ties are exact. For softmax_selected, p is the full softmax
   * (compute_scores). */
  int score_key = rp->has_bias || rp->policy == MOERT_GROUPED_TOP_K;
  int renormalised_softmax = rp->score == MOERT_SOFTMAX && rp->normalize &&
                             rp->epsilon == 0.0f;
  /* p over all columns is only read as a key, by the top_p / threshold
   * tests, or as the weights themselves: renormalised and selected softmax
   * weights come from the kept logits alone (softmax_of below). Skipping
   * it saves E' exponentials per token (DeepSeek-fine's 64 columns: most
   * of the routing time), and changes no bit. */
  int need_p = score_key || rp->policy != MOERT_TOP_K || rp->threshold > 0.0f ||
               !(selected_softmax || renormalised_softmax);
  for (int64_t t = t0; t < t1; ++t) {
    load_row(logits, t, Ep, s->l);
    if (need_p)
      compute_scores(rp->score, s->l, Ep, s->p);
    for (int64_t e = 0; e < Ep; ++e) {
      if (!score_key)
        s->key[e] = s->l[e];
      else if (!rp->has_bias)
        s->key[e] = s->p[e];
      else
        s->key[e] = s->p[e] + MOERT_F32_1D(bias, e);
    }
    if (rp->policy == MOERT_GROUPED_TOP_K)
      mask_groups(rp, s);
    int64_t n = select_best(s->key, Ep, rp->K, rp->higher_first, s->sel,
                            s->idx, s->tmp);

    /* The candidates' probabilities for the top_p / threshold tests. For
     * softmax_selected: the softmax over the K candidates. */
    if (selected_softmax)
      softmax_of(s->l, s->sel, n, s->cand, s->w);
    else if (need_p)
      for (int64_t j = 0; j < n; ++j)
        s->w[j] = s->p[s->sel[j]];

    int64_t kept = n;
    if (rp->policy == MOERT_TOP_P) {
      /* Shortest prefix whose f32 mass reaches top_p; at least 1. */
      float mass = 0.0f;
      for (kept = 0; kept < n;) {
        mass += s->w[kept++];
        if (mass >= rp->top_p)
          break;
      }
    }
    /* Skipping: policy threshold, or a positive threshold on any key-ranked
     * policy (moe-skip-experts), drops kept slots with p < threshold. */
    if (rp->policy == MOERT_THRESHOLD || rp->threshold > 0.0f) {
      int64_t candidates = kept;
      kept = 0;
      for (int64_t j = 0; j < candidates; ++j)
        if (s->w[j] >= rp->threshold) {
          s->sel[kept] = s->sel[j];
          s->w[kept] = s->w[j];
          ++kept;
        }
    }
    /* softmax_selected weights are the softmax of the *kept* logits. So are
     * renormalised softmax weights without epsilon (§1.4): the same values
     * mathematically, computed without the full-softmax denominator, so a
     * token's weights do not depend on columns it did not keep. */
    if ((selected_softmax && kept != n) || renormalised_softmax)
      softmax_of(s->l, s->sel, kept, s->cand, s->w);
    finish_token(rp, weights_out, experts_out, t, s->sel, s->w, kept);
  }
}

/*===----------------------------------------------------------------------===*
 * sinkhorn
 *===----------------------------------------------------------------------===*/

static int route_sinkhorn(const RouteParams *rp, moert_memref_2d *logits,
                          moert_memref_2d *weights_out,
                          moert_memref_2d *experts_out, TokenScratch *s) {
  int64_t T = rp->T, Ep = rp->Ep;
  float *M = (float *)malloc((size_t)T * (size_t)Ep * sizeof(float));
  if (!M)
    return 0;
  /* One max over the whole batch: a per-row shift would scale rows before
   * the first column step and change the plan. */
  float gmax = -INFINITY;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < Ep; ++e) {
      float v = MOERT_F32_2D(logits, t, e);
      M[t * Ep + e] = v;
      if (v > gmax)
        gmax = v;
    }
  for (int64_t i = 0; i < T * Ep; ++i)
    M[i] = expf(M[i] - gmax);
  float target = (float)T / (float)Ep;
  for (int64_t it = 0; it < rp->sinkhorn_iterations; ++it) {
    /* Columns to sum T/E': M *= (T/E') / colsum, colsum in token order. An
     * all-zero column (or row) stays as it is instead of becoming NaN. */
    for (int64_t e = 0; e < Ep; ++e) {
      float cs = 0.0f;
      for (int64_t t = 0; t < T; ++t)
        cs += M[t * Ep + e];
      if (cs == 0.0f)
        continue;
      float f = target / cs;
      for (int64_t t = 0; t < T; ++t)
        M[t * Ep + e] = M[t * Ep + e] * f;
    }
    /* Rows to sum 1: M /= rowsum, rowsum in expert order. */
    for (int64_t t = 0; t < T; ++t) {
      float rs = 0.0f;
      for (int64_t e = 0; e < Ep; ++e)
        rs += M[t * Ep + e];
      if (rs == 0.0f)
        continue;
      for (int64_t e = 0; e < Ep; ++e)
        M[t * Ep + e] = M[t * Ep + e] / rs;
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    const float *row = M + t * Ep;
    int64_t n = select_best(row, Ep, rp->K, rp->higher_first, s->sel, s->idx,
                            s->tmp);
    for (int64_t j = 0; j < n; ++j)
      s->w[j] = row[s->sel[j]];
    finish_token(rp, weights_out, experts_out, t, s->sel, s->w, n);
  }
  free(M);
  return 1;
}

/*===----------------------------------------------------------------------===*
 * expert_choice
 *===----------------------------------------------------------------------===*/

static int route_expert_choice(const RouteParams *rp, moert_memref_2d *logits,
                               moert_memref_2d *weights_out,
                               moert_memref_2d *experts_out, TokenScratch *s) {
  int64_t T = rp->T, Ep = rp->Ep;
  /* Ce = min(T, ceil(capacity_factor * T * K / E')), in double like the
   * capacity formulas of the compiler. */
  double want = ceil(rp->capacity_factor * (double)T * (double)rp->K /
                     (double)Ep);
  int64_t Ce = !(want > 0.0) ? 0 : want >= (double)T ? T : (int64_t)want;

  float *P = (float *)malloc((size_t)T * (size_t)Ep * sizeof(float));
  unsigned char *picked = (unsigned char *)calloc((size_t)T * (size_t)Ep, 1);
  float *col = (float *)malloc((size_t)T * sizeof(float));
  int64_t *order = (int64_t *)malloc((size_t)T * sizeof(int64_t));
  int64_t *tmp = (int64_t *)malloc((size_t)T * sizeof(int64_t));
  int ok = P && picked && col && order && tmp;
  if (ok) {
    for (int64_t t = 0; t < T; ++t) {
      load_row(logits, t, Ep, s->l);
      compute_scores(rp->score, s->l, Ep, P + t * Ep);
    }
    /* Each expert picks its Ce best tokens by p; ties to the lower token
     * (this tie order is fixed, tie_break orders a token's experts). */
    for (int64_t e = 0; e < Ep; ++e) {
      for (int64_t t = 0; t < T; ++t) {
        col[t] = P[t * Ep + e];
        order[t] = t;
      }
      moert_sort_ranked(col, order, T, /*higher_first=*/0, tmp);
      for (int64_t i = 0; i < Ce; ++i)
        picked[order[i] * Ep + e] = 1;
    }
    for (int64_t t = 0; t < T; ++t) {
      /* The experts that picked t, in index order, so that a local index
       * ranks like the expert index for tie_break. */
      int64_t m = 0;
      for (int64_t e = 0; e < Ep; ++e)
        if (picked[t * Ep + e]) {
          s->sel2[m] = e;
          s->cand[m] = P[t * Ep + e];
          ++m;
        }
      int64_t n = select_best(s->cand, m, rp->K, rp->higher_first, s->sel,
                              s->idx, s->tmp);
      for (int64_t j = 0; j < n; ++j)
        s->sel[j] = s->sel2[s->sel[j]];
      if (rp->score == MOERT_SOFTMAX_SELECTED) {
        load_row(logits, t, Ep, s->l);
        softmax_of(s->l, s->sel, n, s->cand, s->w);
      } else {
        for (int64_t j = 0; j < n; ++j)
          s->w[j] = P[t * Ep + s->sel[j]];
      }
      finish_token(rp, weights_out, experts_out, t, s->sel, s->w, n);
    }
  }
  free(P);
  free(picked);
  free(col);
  free(order);
  free(tmp);
  return ok;
}

/*===----------------------------------------------------------------------===*
 * sparse_mixer
 *===----------------------------------------------------------------------===*/

/* PhiMoE's masked softmax evaluated at `top`, over the columns not in
 * `excluded` (or all when excluded < 0): with m = l[top], column e takes
 * part unless (m - l[e]) / max(|l[e]|, m) > 2 * jitter_eps. Written as the
 * negation of PhiMoE's mask test so that a 0/0 ratio (m = l[e] = 0) keeps
 * the column, as masked_fill does. */
static float sparse_mixer_weight(const RouteParams *rp, const float *l,
                                 int64_t top, int64_t excluded) {
  float m = l[top];
  float sum = 0.0f;
  for (int64_t e = 0; e < rp->Ep; ++e) {
    if (e == excluded)
      continue;
    float a = fabsf(l[e]);
    float factor = a > m ? a : m;
    float ratio = (m - l[e]) / factor;
    if (ratio > rp->jitter2)
      continue;
    sum += expf(l[e] - m);
  }
  return expf(l[top] - m) / sum;
}

static void route_sparse_mixer(const RouteParams *rp, moert_memref_2d *logits,
                               moert_memref_2d *weights_out,
                               moert_memref_2d *experts_out, TokenScratch *s) {
  int64_t n = rp->K < 2 ? rp->K : 2;
  if (n > rp->Ep)
    n = rp->Ep;
  for (int64_t t = 0; t < rp->T; ++t) {
    load_row(logits, t, rp->Ep, s->l);
    /* e1, e2 are the two best logits in rank order (tie_break, NaN last):
     * the argmax, then the argmax with l[e1] = -inf. */
    select_best(s->l, rp->Ep, n, rp->higher_first, s->sel, s->idx, s->tmp);
    if (n >= 1)
      s->w[0] = sparse_mixer_weight(rp, s->l, s->sel[0], -1);
    if (n >= 2)
      s->w[1] = sparse_mixer_weight(rp, s->l, s->sel[1], s->sel[0]);
    finish_token(rp, weights_out, experts_out, t, s->sel, s->w, n);
  }
}

/*===----------------------------------------------------------------------===*
 * Entry point
 *===----------------------------------------------------------------------===*/

/* Scratch for tokens of E' columns and K slots; 0 when out of memory
 * (whatever was allocated is freed by scratch_free). */
static int scratch_alloc(TokenScratch *s, const RouteParams *rp) {
  size_t n = (size_t)(rp->Ep > rp->K ? rp->Ep : rp->K);
  s->l = (float *)malloc(n * sizeof(float));
  s->p = (float *)malloc(n * sizeof(float));
  s->key = (float *)malloc(n * sizeof(float));
  s->cand = (float *)malloc(n * sizeof(float));
  s->w = (float *)malloc(n * sizeof(float));
  s->gscore = (float *)malloc(n * sizeof(float));
  s->idx = (int64_t *)malloc(n * sizeof(int64_t));
  s->tmp = (int64_t *)malloc(n * sizeof(int64_t));
  s->sel = (int64_t *)malloc(n * sizeof(int64_t));
  s->sel2 = (int64_t *)malloc(n * sizeof(int64_t));
  return s->l && s->p && s->key && s->cand && s->w && s->gscore && s->idx &&
         s->tmp && s->sel && s->sel2;
}

static void scratch_free(TokenScratch *s) {
  free(s->l);
  free(s->p);
  free(s->key);
  free(s->cand);
  free(s->w);
  free(s->gscore);
  free(s->idx);
  free(s->tmp);
  free(s->sel);
  free(s->sel2);
}

/* Key-ranked routing over the runtime's threads: tokens are independent,
 * so blocks of them run anywhere with their own scratch (the same bits). */
#define MOERT_ROUTE_TOKENS 32 /* tokens per block */

typedef struct {
  const RouteParams *rp;
  moert_memref_2d *logits, *weights_out, *experts_out;
  moert_memref_1d *bias;
} RankedJob;

static void route_ranked_blocks(void *arg, int64_t begin, int64_t end) {
  const RankedJob *j = (const RankedJob *)arg;
  const int64_t t0 = begin * MOERT_ROUTE_TOKENS;
  const int64_t t1 = end * MOERT_ROUTE_TOKENS < j->rp->T ? end * MOERT_ROUTE_TOKENS
                                                         : j->rp->T;
  TokenScratch s;
  if (scratch_alloc(&s, j->rp))
    route_ranked(j->rp, j->logits, j->bias, j->weights_out, j->experts_out, &s,
                 t0, t1);
  else /* out of memory: a defined "no expert" result beats stale output */
    for (int64_t t = t0; t < t1; ++t)
      finish_token(j->rp, j->weights_out, j->experts_out, t, NULL, NULL, 0);
  scratch_free(&s);
}

/* Whether the parameters give the computation a meaning; the verifier
 * rejects the rest, and the kernel then writes nothing. */
static int params_valid(const RouteParams *rp, int64_t null_experts) {
  if (rp->policy < MOERT_TOP_K || rp->policy > MOERT_SPARSE_MIXER)
    return 0;
  if (rp->score < MOERT_SOFTMAX || rp->score > MOERT_IDENTITY)
    return 0;
  if (null_experts < 0)
    return 0;
  if (rp->policy == MOERT_GROUPED_TOP_K) {
    if (rp->num_groups < 1 || rp->Ep % rp->num_groups != 0 ||
        rp->top_groups < 1 || rp->top_groups > rp->num_groups ||
        rp->group_score_k < 1 || rp->group_score_k > rp->Ep / rp->num_groups)
      return 0;
  }
  if (rp->policy == MOERT_SINKHORN && rp->sinkhorn_iterations < 0)
    return 0;
  return 1;
}

void _mlir_ciface_moert_cpu_route(
    moert_memref_2d *logits, moert_memref_1d *bias, moert_memref_2d *weights_out,
    moert_memref_2d *experts_out, int64_t policy, int64_t k, int64_t score,
    int64_t normalize, int64_t tie_break, double scaling, double top_p,
    double threshold, int64_t num_groups, int64_t top_groups,
    int64_t group_score_k, int64_t mask_with_zero, int64_t null_experts,
    int64_t sinkhorn_iterations, double capacity_factor, double jitter_eps,
    double epsilon) {
  if (!moert_valid_2d(logits) || !moert_valid_2d(weights_out))
    return;
  RouteParams rp;
  rp.T = logits->sizes[0];
  rp.Ep = logits->sizes[1];
  rp.K = weights_out->sizes[1];
  if (!moert_is_2d(weights_out, rp.T, rp.K) ||
      !moert_is_2d(experts_out, rp.T, rp.K) || k != rp.K)
    return;
  if (rp.T == 0 || rp.K == 0)
    return;
  /* A bias only takes part in the policies that define a biased key. */
  rp.has_bias = 0;
  if (bias && bias->sizes[0] != 0 &&
      (policy == MOERT_TOP_K || policy == MOERT_TOP_P ||
       policy == MOERT_THRESHOLD || policy == MOERT_GROUPED_TOP_K)) {
    if (!moert_valid_1d(bias) || bias->sizes[0] != rp.Ep)
      return;
    rp.has_bias = 1;
  }
  rp.policy = policy;
  rp.k = k;
  rp.score = score;
  rp.normalize = normalize != 0;
  rp.higher_first = tie_break != 0;
  /* Attribute doubles become f32 once: every comparison and product with
   * them is then f32 arithmetic, as §1 requires. */
  rp.scaling = (float)scaling;
  rp.top_p = (float)top_p;
  rp.threshold = (float)threshold;
  rp.jitter2 = 2.0f * (float)jitter_eps;
  rp.epsilon = (float)epsilon;
  rp.num_groups = num_groups;
  rp.top_groups = top_groups;
  rp.group_score_k = group_score_k;
  rp.mask_with_zero = mask_with_zero != 0;
  rp.sinkhorn_iterations = sinkhorn_iterations;
  rp.capacity_factor = capacity_factor;
  if (!params_valid(&rp, null_experts))
    return;
  rp.E = null_experts < rp.Ep ? rp.Ep - null_experts : 0;
  if (rp.Ep == 0 || moert_mul_limit(rp.T, rp.Ep, INT64_MAX / 8) < 0) {
    fill_empty(&rp, weights_out, experts_out);
    return;
  }

  const int ranked = policy != MOERT_SINKHORN && policy != MOERT_EXPERT_CHOICE &&
                     policy != MOERT_SPARSE_MIXER;
  const moert_parallel_hook *hook = moert_cpu_parallel_hook();
  const int64_t blocks = (rp.T + MOERT_ROUTE_TOKENS - 1) / MOERT_ROUTE_TOKENS;
  if (ranked && hook && blocks > 1 &&
      rp.T * rp.Ep * 16 >= MOERT_CPU_PARALLEL_MIN_WORK) {
    RankedJob job = {&rp, logits, weights_out, experts_out, bias};
    hook->parallel_for(hook->user, blocks, route_ranked_blocks, &job);
    return;
  }
  /* Per-token scratch: E' floats / indices each; K <= E' slots are used
   * but K may exceed E', so size the slot arrays for max(K, E'). */
  TokenScratch s;
  int ok = scratch_alloc(&s, &rp);
  if (ok) {
    switch (policy) {
    case MOERT_SINKHORN:
      ok = route_sinkhorn(&rp, logits, weights_out, experts_out, &s);
      break;
    case MOERT_EXPERT_CHOICE:
      ok = route_expert_choice(&rp, logits, weights_out, experts_out, &s);
      break;
    case MOERT_SPARSE_MIXER:
      route_sparse_mixer(&rp, logits, weights_out, experts_out, &s);
      break;
    default:
      route_ranked(&rp, logits, bias, weights_out, experts_out, &s, 0, rp.T);
      break;
    }
  }
  /* Out of memory: a defined "no expert" result beats stale output. */
  if (!ok)
    fill_empty(&rp, weights_out, experts_out);
  scratch_free(&s);
}
