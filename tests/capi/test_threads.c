/*
 * test_threads.c — the C ABI's thread rules (otter.h, "Threads"), from plain C with POSIX threads:
 *  1. one session used from two threads at once: every call either succeeds or fails with
 *     OTTER_ERROR_BUSY ("session is busy"), the calls that succeeded are exactly the steps taken,
 *     and the weights stay finite (before, concurrent steps silently corrupted them);
 *  2. otter_session_free while another thread is inside a train_step waits for that step;
 *  3. separate sessions train in parallel without interfering (same results as serially).
 * Run also under ThreadSanitizer (scripts/sanitize, ctest label `threads`).
 *
 * argv[1]: the digits test-data directory (mlp.onnx). Prints "threads: all N checks passed".
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otter/otter.h"

static int g_checks = 0, g_failures = 0;
#define CHECK(cond)                                                            \
  do {                                                                         \
    ++g_checks;                                                                \
    if (!(cond)) {                                                             \
      ++g_failures;                                                            \
      fprintf(stderr, "%s:%d: FAILED: %s (%s)\n", __FILE__, __LINE__, #cond,   \
              otter_last_error());                                             \
    }                                                                          \
  } while (0)

enum { BATCH = 256, FEATURES = 64, CLASSES = 10 };
static float g_x[BATCH * FEATURES];
static int64_t g_y[BATCH];
static const int64_t g_x_shape[2] = {BATCH, FEATURES};
static const int64_t g_y_shape[1] = {BATCH};
static const char* const g_names[2] = {"x", "label"};
static char g_model[4096];

static void make_batch(void) {
  uint32_t state = 7u;
  int i, j;
  for (i = 0; i < BATCH; ++i) g_y[i] = i % CLASSES;
  for (i = 0; i < BATCH * FEATURES; ++i) {
    state = state * 1664525u + 1013904223u;
    g_x[i] = (float)(state >> 8) / 16777216.0f;
  }
  for (i = 0; i < BATCH; ++i)
    for (j = 0; j < FEATURES; ++j)
      if (j % CLASSES == g_y[i]) g_x[i * FEATURES + j] += 0.5f;
}

static otter_status step(otter_session* s) {
  otter_tensor_view in[2];
  memset(in, 0, sizeof in);
  in[0].data = g_x; in[0].dtype = OTTER_DTYPE_FLOAT32; in[0].ndim = 2; in[0].shape = g_x_shape;
  in[1].data = g_y; in[1].dtype = OTTER_DTYPE_INT64; in[1].ndim = 1; in[1].shape = g_y_shape;
  in[0].device_type = in[1].device_type = OTTER_DEVICE_CPU;
  return otter_session_train_step(s, 2, g_names, in, NULL);
}

static otter_session* new_session(void) {
  otter_options* o = NULL;
  otter_session* s = NULL;
  if (otter_options_create(&o) != OTTER_OK) exit(2);
  otter_options_set(o, "loss", "cross_entropy");
  otter_options_set(o, "optimizer", "adamw");
  otter_options_set(o, "lr", "0.001");
  if (otter_session_create_from_file(g_model, o, &s) != OTTER_OK) {
    fprintf(stderr, "cannot create a session: %s\n", otter_last_error());
    exit(2);
  }
  otter_options_free(o);
  return s;
}

typedef struct {
  otter_session* s;
  int steps;           /* calls to make */
  atomic_int ok, busy, other;
  atomic_int started;
} worker_arg;

static void* worker(void* p) {
  worker_arg* a = (worker_arg*)p;
  int i;
  atomic_store(&a->started, 1);
  for (i = 0; i < a->steps; ++i) {
    otter_status st = step(a->s);
    if (st == OTTER_OK) atomic_fetch_add(&a->ok, 1);
    else if (st == OTTER_ERROR_BUSY) atomic_fetch_add(&a->busy, 1);
    else atomic_fetch_add(&a->other, 1);
  }
  return NULL;
}

static float first_weight_sum(otter_session* s) {
  const char* name = NULL;
  int32_t ndim = 0;
  const int64_t* shape = NULL;
  otter_dtype dt;
  static float buf[1 << 16];
  int64_t n = 1;
  int32_t k;
  float sum = 0;
  otter_session_parameter_info(s, 0, &name, &dt, &ndim, &shape);
  for (k = 0; k < ndim; ++k) n *= shape[k];
  if (n > (int64_t)(sizeof buf / sizeof buf[0])) return NAN;
  if (otter_session_get_parameter(s, name, buf, (size_t)n * sizeof(float)) != OTTER_OK) return NAN;
  for (k = 0; k < n; ++k) sum += buf[k];
  return sum;
}

int main(int argc, char** argv) {
  worker_arg a, b;
  pthread_t ta, tb;
  otter_session *s, *s1, *s2;
  double steps = -1;
  float serial, parallel1, parallel2;
  int i;

  if (argc != 2) {
    fprintf(stderr, "usage: %s DIGITS_TESTDATA_DIR\n", argv[0]);
    return 2;
  }
  snprintf(g_model, sizeof g_model, "%s/mlp.onnx", argv[1]);
  make_batch();

  /* 1. Two threads on one session. */
  s = new_session();
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  a.s = b.s = s;
  a.steps = b.steps = 150;
  pthread_create(&ta, NULL, worker, &a);
  pthread_create(&tb, NULL, worker, &b);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  CHECK(atomic_load(&a.other) == 0 && atomic_load(&b.other) == 0);
  CHECK(otter_session_get_stat(s, "step", &steps) == OTTER_OK);
  CHECK((int)steps == atomic_load(&a.ok) + atomic_load(&b.ok));
  CHECK(isfinite(first_weight_sum(s)));
  printf("threads: %d + %d steps taken, %d + %d calls refused as busy\n", atomic_load(&a.ok), atomic_load(&b.ok),
         atomic_load(&a.busy), atomic_load(&b.busy));
  /* While a step runs, another call is refused with a clear message. */
  memset(&a, 0, sizeof a);
  a.s = s;
  a.steps = 400;
  pthread_create(&ta, NULL, worker, &a);
  while (!atomic_load(&a.started)) {
  }
  for (i = 0; i < 2000000; ++i) {
    double v;
    otter_status st = otter_session_get_stat(s, "step", &v);
    if (st == OTTER_ERROR_BUSY) break;
  }
  CHECK(i < 2000000);
  CHECK(strstr(otter_last_error(), "busy") != NULL);
  pthread_join(ta, NULL);

  /* 2. Freeing during a step waits for it. */
  memset(&a, 0, sizeof a);
  a.s = s;
  a.steps = 1;
  pthread_create(&ta, NULL, worker, &a);
  while (!atomic_load(&a.started)) {
  }
  otter_session_free(s);
  pthread_join(ta, NULL);
  CHECK(atomic_load(&a.other) == 0);

  /* 3. Separate sessions in parallel give the serial results. */
  s1 = new_session();
  for (i = 0; i < 20; ++i) CHECK(step(s1) == OTTER_OK);
  serial = first_weight_sum(s1);
  otter_session_free(s1);
  s1 = new_session();
  s2 = new_session();
  memset(&a, 0, sizeof a);
  memset(&b, 0, sizeof b);
  a.s = s1;
  b.s = s2;
  a.steps = b.steps = 20;
  pthread_create(&ta, NULL, worker, &a);
  pthread_create(&tb, NULL, worker, &b);
  pthread_join(ta, NULL);
  pthread_join(tb, NULL);
  CHECK(atomic_load(&a.ok) == 20 && atomic_load(&b.ok) == 20);
  parallel1 = first_weight_sum(s1);
  parallel2 = first_weight_sum(s2);
  CHECK(parallel1 == serial && parallel2 == serial);
  otter_session_free(s1);
  otter_session_free(s2);

  if (g_failures) {
    fprintf(stderr, "threads: %d of %d checks failed\n", g_failures, g_checks);
    return 1;
  }
  printf("threads: all %d checks passed\n", g_checks);
  return 0;
}
