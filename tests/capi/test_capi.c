/*
 * test_capi.c — exercises every function of Otter's C ABI (capi/include/otter/otter.h) from plain
 * C99, including the error paths: status codes, otter_last_error() messages, and out-parameters
 * left untouched on error. Training correctness is tested elsewhere: the training batch is
 * generated deterministically here and we only check that training makes progress (otter_npz_load
 * of train.npz is tested on its own).
 *
 * Build and run, from the repository root (BUILD = the CMake build directory):
 *
 *   gcc -std=c99 -Wall -Wextra -Werror -pedantic -I capi/include tests/capi/test_capi.c \
 *       -o BUILD/test_capi -L BUILD -lotter -lm -Wl,-rpath,"$(realpath BUILD)"
 *   BUILD/test_capi BUILD/testdata/digits
 *
 * and under valgrind (definite leaks and memory errors fail; the OpenBLAS/OpenMP thread pools'
 * "still reachable"/"possibly lost" blocks do not):
 *
 *   valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=1 \
 *       BUILD/test_capi BUILD/testdata/digits
 *
 * argv[1]: the digits test-data directory (mlp.onnx: input "x" float32 [N,64], output "logits"
 * float32 [N,10]). Temporary files go to a fresh directory under $TMPDIR (or /tmp), removed at
 * the end. Prints "capi: all N checks passed" and exits 0, or prints each failed check
 * (file:line, what) and exits 1.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "otter/otter.h"

/* ---- checks ---- */

static int g_checks = 0;
static int g_failures = 0;

static void check_at(const char* file, int line, int ok, const char* fmt, ...) {
  ++g_checks;
  if (ok) return;
  ++g_failures;
  printf("%s:%d: FAILED: ", file, line);
  {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
  }
  putchar('\n');
  fflush(stdout);
}

/* CHECK(cond): one check; prints the condition's text when it fails. */
#define CHECK(cond) check_at(__FILE__, __LINE__, (cond) ? 1 : 0, "%s", #cond)
/* CHECK_MSG(cond, what): the same with a description. */
#define CHECK_MSG(cond, what) check_at(__FILE__, __LINE__, (cond) ? 1 : 0, "%s (%s)", what, #cond)
/* CHECK_OK(call): the call returns OTTER_OK. */
#define CHECK_OK(call) check_ok_at(__FILE__, __LINE__, (call), #call)
/* CHECK_ERR(call, status, needle): the call fails with `status`, and otter_last_error() is
 * non-empty and contains `needle` (NULL: any message). */
#define CHECK_ERR(call, status, needle) check_err_at(__FILE__, __LINE__, (call), status, needle, #call)
/* REQUIRE(cond): a check whose failure makes the rest of the test meaningless. */
#define REQUIRE(cond) require_at(__FILE__, __LINE__, (cond) ? 1 : 0, #cond)

static void finish(void);
static void require_at(const char* file, int line, int ok, const char* text) {
  check_at(file, line, ok, "%s", text);
  if (ok) return;
  printf("%s:%d: giving up\n", file, line);
  finish();
}

static int check_ok_at(const char* file, int line, otter_status s, const char* text) {
  check_at(file, line, s == OTTER_OK, "%s returned %s: %s", text, otter_status_name(s), otter_last_error());
  return s == OTTER_OK;
}

static void check_err_at(const char* file, int line, otter_status s, otter_status want, const char* needle,
                         const char* text) {
  const char* msg = otter_last_error();
  check_at(file, line, s == want, "%s returned %s, expected %s (last error: \"%s\")", text, otter_status_name(s),
           otter_status_name(want), msg ? msg : "(NULL)");
  if (s == OTTER_OK) return;
  check_at(file, line, msg != NULL && msg[0] != '\0', "%s: otter_last_error() is empty after a failure", text);
  if (needle && msg)
    check_at(file, line, strstr(msg, needle) != NULL, "%s: otter_last_error() \"%s\" does not mention \"%s\"", text, msg,
             needle);
}

/* ---- temporary files ---- */

static char g_tmpdir[4096];
static char g_paths[16][4200];
static int g_npaths = 0;

/* A path in the temporary directory, removed (with PATH.tmp) at the end. */
static const char* tmp_path(const char* name) {
  char* p;
  if (g_npaths >= 16) abort();
  p = g_paths[g_npaths++];
  snprintf(p, sizeof g_paths[0], "%s/%s", g_tmpdir, name);
  return p;
}

static void cleanup(void) {
  int i;
  char buf[4300];
  for (i = 0; i < g_npaths; ++i) {
    unlink(g_paths[i]);
    rmdir(g_paths[i]);
    snprintf(buf, sizeof buf, "%.4200s.tmp", g_paths[i]);
    unlink(buf);
  }
  if (g_tmpdir[0]) rmdir(g_tmpdir);
}

static void finish(void) {
  cleanup();
  if (g_failures == 0) {
    printf("capi: all %d checks passed\n", g_checks);
    exit(0);
  }
  printf("capi: %d of %d checks FAILED\n", g_failures, g_checks);
  exit(1);
}

static int file_exists(const char* path) { return access(path, F_OK) == 0; }

/* An existing directory in the temporary directory: writing a file there must fail with
 * OTTER_ERROR_IO (the rename of PATH.tmp over it fails) and leave no PATH.tmp behind. */
static const char* tmp_dir_path(void) {
  static const char* dir = NULL;
  if (!dir) {
    dir = tmp_path("a_directory");
    if (mkdir(dir, 0700) != 0) perror("mkdir");
  }
  return dir;
}

/* Whether PATH.tmp exists; removes it, so that checks stay independent. */
static int tmp_left_behind(const char* path) {
  char buf[4300];
  int exists;
  snprintf(buf, sizeof buf, "%s.tmp", path);
  exists = file_exists(buf);
  unlink(buf);
  return exists;
}

static unsigned char* read_file(const char* path, size_t* size) {
  FILE* f = fopen(path, "rb");
  unsigned char* data;
  long n;
  if (!f) return NULL;
  if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
    fclose(f);
    return NULL;
  }
  data = (unsigned char*)malloc((size_t)n + 1);
  if (data && fread(data, 1, (size_t)n, f) != (size_t)n) {
    free(data);
    data = NULL;
  }
  fclose(f);
  *size = (size_t)n;
  return data;
}

/* ---- test data ---- */

enum { BATCH = 32, FEATURES = 64, CLASSES = 10, STEPS = 50, MAX_PARAMS = 16 };

static float g_x[BATCH * FEATURES];
static int64_t g_y[BATCH];
static const int64_t g_x_shape[2] = {BATCH, FEATURES};
static const int64_t g_y_shape[1] = {BATCH};

/* Labels i % 10; x in [0, 1): uniform noise in [0, 0.5) plus 0.5 on the features j with
 * j % 10 == label, so that 50 SGD steps make clear progress. */
static void make_batch(void) {
  uint32_t state = 12345u;
  int i, j;
  for (i = 0; i < BATCH; ++i) g_y[i] = i % CLASSES;
  for (i = 0; i < BATCH; ++i)
    for (j = 0; j < FEATURES; ++j) {
      state = state * 1664525u + 1013904223u; /* LCG */
      g_x[i * FEATURES + j] = (float)(state >> 8) / 33554432.0f + (j % CLASSES == g_y[i] ? 0.5f : 0.0f);
    }
}

static otter_tensor_view view(void* data, otter_dtype dtype, int32_t ndim, const int64_t* shape) {
  otter_tensor_view v;
  v.data = data;
  v.dtype = dtype;
  v.ndim = ndim;
  v.shape = shape;
  v.device_type = OTTER_DEVICE_CPU;
  v.device_id = 0;
  return v;
}

static const char* const g_names_xy[2] = {"x", "label"};

static void batch_views(otter_tensor_view v[2]) {
  v[0] = view(g_x, OTTER_DTYPE_FLOAT32, 2, g_x_shape);
  v[1] = view(g_y, OTTER_DTYPE_INT64, 1, g_y_shape);
}

/* Mean cross entropy of logits [n, CLASSES] against labels, computed here in double. */
static double cross_entropy(const float* logits, const int64_t* labels, int n) {
  double total = 0;
  int i, c;
  for (i = 0; i < n; ++i) {
    const float* row = logits + (size_t)i * CLASSES;
    double m = row[0], sum = 0;
    for (c = 1; c < CLASSES; ++c)
      if (row[c] > m) m = row[c];
    for (c = 0; c < CLASSES; ++c) sum += exp(row[c] - m);
    total += log(sum) + m - row[labels[i]];
  }
  return total / n;
}

/* ---- parameters ---- */

typedef struct {
  size_t count;
  const char* names[MAX_PARAMS];
  size_t bytes[MAX_PARAMS];
  float* values[MAX_PARAMS];
} param_set;

/* Copies every trainable parameter of `s` (names stay owned by `names_from`). */
static void params_get(otter_session* s, const otter_session* names_from, param_set* p) {
  size_t i;
  int32_t k;
  memset(p, 0, sizeof *p);
  if (!CHECK_OK(otter_session_parameter_count(names_from, &p->count))) return;
  REQUIRE(p->count <= MAX_PARAMS);
  for (i = 0; i < p->count; ++i) {
    otter_dtype dtype;
    int32_t ndim;
    const int64_t* shape;
    size_t n = 1;
    CHECK_OK(otter_session_parameter_info(names_from, i, &p->names[i], &dtype, &ndim, &shape));
    for (k = 0; k < ndim; ++k) n *= (size_t)shape[k];
    p->bytes[i] = n * sizeof(float);
    p->values[i] = (float*)malloc(p->bytes[i]);
    REQUIRE(p->values[i] != NULL);
    CHECK_OK(otter_session_get_parameter(s, p->names[i], p->values[i], p->bytes[i]));
  }
}

static int params_equal(const param_set* a, const param_set* b) {
  size_t i;
  if (a->count != b->count) return 0;
  for (i = 0; i < a->count; ++i)
    if (a->bytes[i] != b->bytes[i] || strcmp(a->names[i], b->names[i]) != 0 ||
        memcmp(a->values[i], b->values[i], a->bytes[i]) != 0)
      return 0;
  return 1;
}

static void params_free(param_set* p) {
  size_t i;
  for (i = 0; i < p->count; ++i) free(p->values[i]);
  memset(p, 0, sizeof *p);
}

/* ---- the tests ---- */

static const char* g_model_path;
static const char* g_data_dir;
#define SENTINEL_PTR ((void*)(uintptr_t)0x5e5e5e5e)
#define SENTINEL_D (-12345.5)

static void test_library(void) {
  static const char* const status_names[] = {
      "OTTER_OK",           "OTTER_ERROR_INVALID_ARGUMENT", "OTTER_ERROR_NOT_FOUND",
      "OTTER_ERROR_INVALID_MODEL", "OTTER_ERROR_UNSUPPORTED",   "OTTER_ERROR_IO",
      "OTTER_ERROR_OUT_OF_MEMORY", "OTTER_ERROR_WRONG_STATE",   "OTTER_ERROR_INTERNAL"};
  int major, minor, patch, i;
  char extra;
  const char* v = otter_version();

  CHECK(otter_last_error() != NULL && otter_last_error()[0] == '\0'); /* no failure yet */
  CHECK(otter_api_version() == OTTER_API_VERSION);
  CHECK(otter_api_version() / 1000 == OTTER_API_VERSION / 1000);
  CHECK(v != NULL && sscanf(v, "%d.%d.%d%c", &major, &minor, &patch, &extra) == 3);
  CHECK(v == otter_version()); /* static storage */
  for (i = 0; i <= (int)OTTER_ERROR_INTERNAL; ++i)
    CHECK_MSG(strcmp(otter_status_name((otter_status)i), status_names[i]) == 0, status_names[i]);
  CHECK(otter_status_name((otter_status)99) != NULL && strstr(otter_status_name((otter_status)99), "OTTER") != NULL);

  CHECK(otter_dtype_size(OTTER_DTYPE_FLOAT32) == 4);
  CHECK(otter_dtype_size(OTTER_DTYPE_UINT8) == 1);
  CHECK(otter_dtype_size(OTTER_DTYPE_INT8) == 1);
  CHECK(otter_dtype_size(OTTER_DTYPE_INT32) == 4);
  CHECK(otter_dtype_size(OTTER_DTYPE_INT64) == 8);
  CHECK(otter_dtype_size(OTTER_DTYPE_BOOL) == 1);
  CHECK(otter_dtype_size(OTTER_DTYPE_FLOAT16) == 2);
  CHECK(otter_dtype_size(OTTER_DTYPE_FLOAT64) == 8);
  CHECK(otter_dtype_size(OTTER_DTYPE_BFLOAT16) == 2);
  CHECK(otter_dtype_size(OTTER_DTYPE_UNDEFINED) == 0);
  CHECK(otter_dtype_size((otter_dtype)5) == 0);
  CHECK(otter_dtype_size((otter_dtype)12345) == 0);
  CHECK(otter_dtype_size((otter_dtype)-1) == 0);

  /* the ABI's frozen struct, as a C compiler lays it out */
  CHECK(sizeof(otter_tensor_view) == 32 && sizeof(otter_status) == 4 && sizeof(otter_dtype) == 4);
}

static void test_options(void) {
  otter_options* o = (otter_options*)SENTINEL_PTR;
  const char* val = (const char*)SENTINEL_PTR;
  char saved[512];

  CHECK_ERR(otter_options_create(NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  REQUIRE(CHECK_OK(otter_options_create(&o)) && o != NULL && o != SENTINEL_PTR);

  /* NULL arguments */
  CHECK_ERR(otter_options_set(NULL, "lr", "0.1"), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_options_set(o, NULL, "0.1"), OTTER_ERROR_INVALID_ARGUMENT, "key");
  CHECK_ERR(otter_options_set(o, "lr", NULL), OTTER_ERROR_INVALID_ARGUMENT, "value");
  CHECK_ERR(otter_options_set_double(NULL, "lr", 0.1), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_options_set_double(o, NULL, 0.1), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_options_set_int(NULL, "seed", 1), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_options_set_int(o, NULL, 1), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_options_get(NULL, "lr", &val), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_options_get(o, NULL, &val), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_options_get(o, "lr", NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(val == (const char*)SENTINEL_PTR);

  /* unknown keys */
  CHECK_ERR(otter_options_set(o, "learning_rate", "0.1"), OTTER_ERROR_NOT_FOUND, "learning_rate");
  CHECK_ERR(otter_options_set_double(o, "no_such_key", 1.0), OTTER_ERROR_NOT_FOUND, "no_such_key");
  CHECK_ERR(otter_options_set_int(o, "no_such_key", 1), OTTER_ERROR_NOT_FOUND, "no_such_key");
  CHECK_ERR(otter_options_get(o, "no_such_key", &val), OTTER_ERROR_NOT_FOUND, "no_such_key");
  /* a known key that is not set */
  CHECK_ERR(otter_options_get(o, "momentum", &val), OTTER_ERROR_NOT_FOUND, "momentum");
  CHECK(val == (const char*)SENTINEL_PTR);

  /* good values, read back */
  CHECK_OK(otter_options_set(o, "lr", "0.1"));
  CHECK(CHECK_OK(otter_options_get(o, "lr", &val)) && strcmp(val, "0.1") == 0);
  /* bad values: INVALID_ARGUMENT, message names the key or value, the old value stays */
  CHECK_ERR(otter_options_set(o, "lr", "abc"), OTTER_ERROR_INVALID_ARGUMENT, "abc");
  CHECK(strstr(otter_last_error(), "lr") != NULL);
  CHECK_ERR(otter_options_set(o, "lr", ""), OTTER_ERROR_INVALID_ARGUMENT, "lr");
  CHECK_ERR(otter_options_set(o, "lr", "0.1x"), OTTER_ERROR_INVALID_ARGUMENT, "0.1x");
  CHECK_ERR(otter_options_set(o, "lr", "nan"), OTTER_ERROR_INVALID_ARGUMENT, "lr");
  CHECK_ERR(otter_options_set(o, "lr", "inf"), OTTER_ERROR_INVALID_ARGUMENT, "lr");
  CHECK_ERR(otter_options_set_double(o, "lr", NAN), OTTER_ERROR_INVALID_ARGUMENT, "lr");
  CHECK(CHECK_OK(otter_options_get(o, "lr", &val)) && strcmp(val, "0.1") == 0);
  CHECK_ERR(otter_options_set(o, "loss", "foo"), OTTER_ERROR_INVALID_ARGUMENT, "foo");
  CHECK(strstr(otter_last_error(), "cross_entropy") != NULL); /* lists the choices */
  CHECK_ERR(otter_options_set(o, "grad_accum", "1.5"), OTTER_ERROR_INVALID_ARGUMENT, "1.5");
  CHECK_ERR(otter_options_set_double(o, "grad_accum", 1.5), OTTER_ERROR_INVALID_ARGUMENT, "grad_accum");
  CHECK_ERR(otter_options_set(o, "grad_accum", "0"), OTTER_ERROR_INVALID_ARGUMENT, "grad_accum");
  CHECK_ERR(otter_options_set(o, "seed", "99999999999999999999"), OTTER_ERROR_INVALID_ARGUMENT, "seed");
  CHECK_ERR(otter_options_set(o, "precision_op", "MatMul=fast"), OTTER_ERROR_INVALID_ARGUMENT, "fast");
  CHECK_ERR(otter_options_set(o, "seed", "12ab"), OTTER_ERROR_INVALID_ARGUMENT, "seed");
  CHECK_ERR(otter_options_set(o, "nesterov", "maybe"), OTTER_ERROR_INVALID_ARGUMENT, "nesterov");
  CHECK_ERR(otter_options_set(o, "optimizer", "lbfgs"), OTTER_ERROR_INVALID_ARGUMENT, "lbfgs");
  CHECK_ERR(otter_options_set(o, "reduction", "max"), OTTER_ERROR_INVALID_ARGUMENT, "max");
  CHECK_ERR(otter_options_set(o, "schedule", "step"), OTTER_ERROR_INVALID_ARGUMENT, "schedule");
  CHECK_ERR(otter_options_set(o, "precision", "fp8"), OTTER_ERROR_INVALID_ARGUMENT, "fp8");
  CHECK_ERR(otter_options_set(o, "device", "tpu"), OTTER_ERROR_INVALID_ARGUMENT, "tpu");
  CHECK_ERR(otter_options_set(o, "loss_scale", "-1"), OTTER_ERROR_INVALID_ARGUMENT, "loss_scale");
  CHECK_ERR(otter_options_get(o, "loss", &val), OTTER_ERROR_NOT_FOUND, "loss"); /* the failed set stored nothing */

  /* a message stays until the next failing call, also across successful calls */
  CHECK_ERR(otter_options_set(o, "momentum", "fast"), OTTER_ERROR_INVALID_ARGUMENT, "fast");
  snprintf(saved, sizeof saved, "%s", otter_last_error());
  CHECK_OK(otter_options_set(o, "momentum", "0.5"));
  CHECK(strcmp(otter_last_error(), saved) == 0);

  /* typed setters */
  CHECK_OK(otter_options_set_double(o, "lr", 0.1));
  CHECK(CHECK_OK(otter_options_get(o, "lr", &val)) && strtod(val, NULL) == 0.1);
  CHECK_OK(otter_options_set_double(o, "momentum", 1.0 / 3.0));
  CHECK(CHECK_OK(otter_options_get(o, "momentum", &val)) && strtod(val, NULL) == 1.0 / 3.0);
  CHECK_OK(otter_options_set_int(o, "seed", -7));
  CHECK(CHECK_OK(otter_options_get(o, "seed", &val)) && strcmp(val, "-7") == 0);
  CHECK_OK(otter_options_set_int(o, "seed", INT64_MAX));
  CHECK(CHECK_OK(otter_options_get(o, "seed", &val)) && strcmp(val, "9223372036854775807") == 0);
  CHECK_OK(otter_options_set_int(o, "grad_accum", 2));
  CHECK_OK(otter_options_set_double(o, "grad_accum", 3.0)); /* "3" is an integer */
  CHECK(CHECK_OK(otter_options_get(o, "grad_accum", &val)) && strcmp(val, "3") == 0);
  CHECK_OK(otter_options_set_int(o, "lr", 1)); /* an integer is a number */
  CHECK_OK(otter_options_set(o, "nesterov", "true"));
  CHECK_OK(otter_options_set(o, "trainable", "fc1.weight,fc2.weight"));
  CHECK_OK(otter_options_set(o, "device", "cuda:1"));
  CHECK_OK(otter_options_set(o, "loss_scale", "1024"));
  CHECK(CHECK_OK(otter_options_get(o, "loss_scale", &val)) && strcmp(val, "1024") == 0);

  otter_options_free(o);
  otter_options_free(NULL);
}

static otter_options* make_options(const char* key, const char* value) {
  otter_options* o = NULL;
  REQUIRE(CHECK_OK(otter_options_create(&o)));
  CHECK_OK(otter_options_set(o, "loss", "cross_entropy"));
  CHECK_OK(otter_options_set(o, "optimizer", "sgd"));
  CHECK_OK(otter_options_set(o, "lr", "0.1"));
  if (key) CHECK_OK(otter_options_set(o, key, value));
  return o;
}

/* Session creation must fail with `want`; the out-pointer stays untouched. */
static void expect_create_fails(const char* key, const char* value, otter_status want, const char* needle, int line) {
  otter_options* o = make_options(key, value);
  otter_session* s = (otter_session*)SENTINEL_PTR;
  check_err_at(__FILE__, line, otter_session_create_from_file(g_model_path, o, &s), want, needle,
               "otter_session_create_from_file (option)");
  check_at(__FILE__, line, s == (otter_session*)SENTINEL_PTR, "out-pointer changed on error (%s=%s)", key, value);
  otter_options_free(o);
}

static void test_create(void) {
  otter_session* s = (otter_session*)SENTINEL_PTR;
  otter_options* o = make_options(NULL, NULL);
  unsigned char* model;
  size_t size = 0;

  /* NULL arguments */
  CHECK_ERR(otter_session_create_from_file(NULL, o, &s), OTTER_ERROR_INVALID_ARGUMENT, "model_path");
  CHECK_ERR(otter_session_create_from_file(g_model_path, o, NULL), OTTER_ERROR_INVALID_ARGUMENT, "out");
  CHECK_ERR(otter_session_create_from_buffer(NULL, 10, NULL, o, &s), OTTER_ERROR_INVALID_ARGUMENT, "model_data");
  /* a missing file */
  CHECK_ERR(otter_session_create_from_file("/nonexistent/otter/model.onnx", o, &s), OTTER_ERROR_NOT_FOUND,
            "/nonexistent/otter/model.onnx");
  CHECK(s == (otter_session*)SENTINEL_PTR);

  model = read_file(g_model_path, &size);
  REQUIRE(model != NULL && size > 100);
  CHECK_ERR(otter_session_create_from_buffer(model, size, NULL, o, NULL), OTTER_ERROR_INVALID_ARGUMENT, "out");
  /* truncated and garbage buffers */
  CHECK_ERR(otter_session_create_from_buffer(model, size / 2, NULL, o, &s), OTTER_ERROR_INVALID_MODEL, NULL);
  CHECK_ERR(otter_session_create_from_buffer(model, size - 1, NULL, o, &s), OTTER_ERROR_INVALID_MODEL, NULL);
  CHECK_ERR(otter_session_create_from_buffer("\xff\xff\xff\xff garbage", 13, NULL, o, &s), OTTER_ERROR_INVALID_MODEL,
            NULL);
  CHECK(s == (otter_session*)SENTINEL_PTR);
  /* a good buffer (copied: freed right after), with and without base_dir, and NULL options */
  if (CHECK_OK(otter_session_create_from_buffer(model, size, NULL, o, &s))) {
    CHECK(s != NULL && s != (otter_session*)SENTINEL_PTR);
    otter_session_free(s);
  }
  /* NULL options: all defaults, so loss "none", which needs a scalar output: this model has none */
  s = (otter_session*)SENTINEL_PTR;
  CHECK_ERR(otter_session_create_from_buffer(model, size, "/tmp", NULL, &s), OTTER_ERROR_INVALID_ARGUMENT, "logits");
  CHECK(s == (otter_session*)SENTINEL_PTR);
  free(model);
  otter_options_free(o);

  /* settings that parse but this build rejects */
  /* (one GPU per process: another index is refused with or without a GPU) */
  expect_create_fails("device", "cuda:1", OTTER_ERROR_UNSUPPORTED, "cuda:1", __LINE__);
  expect_create_fails("device", "cuda:7", OTTER_ERROR_UNSUPPORTED, "cuda:7", __LINE__);
  /* semantic errors found at creation */
  expect_create_fails("loss_output", "no_such_output", OTTER_ERROR_INVALID_ARGUMENT, "no_such_output", __LINE__);
  expect_create_fails("trainable", "no_such_param", OTTER_ERROR_INVALID_ARGUMENT, "no_such_param", __LINE__);
  expect_create_fails("precision_node", "no_such_node=fp32", OTTER_ERROR_INVALID_ARGUMENT, "no_such_node", __LINE__);
}

/* otter_session_*_info at `index` out of range: INVALID_ARGUMENT, out-params untouched. */
typedef otter_status (*info_fn)(const otter_session*, size_t, const char**, otter_dtype*, int32_t*, const int64_t**);
static void expect_info_out_of_range(info_fn fn, const otter_session* s, size_t index, int line) {
  const char* name = (const char*)SENTINEL_PTR;
  otter_dtype dtype = (otter_dtype)77;
  int32_t ndim = 77;
  const int64_t* shape = (const int64_t*)SENTINEL_PTR;
  check_err_at(__FILE__, line, fn(s, index, &name, &dtype, &ndim, &shape), OTTER_ERROR_INVALID_ARGUMENT, "range",
               "info(out of range)");
  check_at(__FILE__, line, name == (const char*)SENTINEL_PTR && dtype == (otter_dtype)77 && ndim == 77 &&
                               shape == (const int64_t*)SENTINEL_PTR,
           "out-params changed on error");
  check_err_at(__FILE__, line, fn(NULL, 0, &name, &dtype, &ndim, &shape), OTTER_ERROR_INVALID_ARGUMENT, "NULL",
               "info(NULL session)");
  check_at(__FILE__, line, name == (const char*)SENTINEL_PTR, "out-params changed on error");
}

static void test_describe(otter_session* s) {
  size_t n = 777, i;
  const char* name = NULL;
  const char* dev = (const char*)SENTINEL_PTR;
  otter_dtype dtype = OTTER_DTYPE_UNDEFINED;
  int32_t ndim = -5;
  const int64_t* shape = NULL;
  size_t total = 0;

  CHECK_ERR(otter_session_device(NULL, &dev), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_device(s, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(dev == (const char*)SENTINEL_PTR);
  CHECK(CHECK_OK(otter_session_device(s, &dev)) && strcmp(dev, "cpu") == 0);

  /* inputs: x float32 [-1, 64], label int64 [-1] */
  CHECK_ERR(otter_session_input_count(NULL, &n), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_input_count(s, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(n == 777);
  CHECK(CHECK_OK(otter_session_input_count(s, &n)) && n == 2);
  CHECK_OK(otter_session_input_info(s, 0, &name, &dtype, &ndim, &shape));
  CHECK(strcmp(name, "x") == 0 && dtype == OTTER_DTYPE_FLOAT32 && ndim == 2 && shape[0] == -1 && shape[1] == FEATURES);
  CHECK_OK(otter_session_input_info(s, 1, &name, &dtype, &ndim, &shape));
  CHECK(strcmp(name, "label") == 0 && dtype == OTTER_DTYPE_INT64 && ndim == 1 && shape[0] == -1);
  CHECK_OK(otter_session_input_info(s, 1, NULL, NULL, NULL, NULL)); /* every out-param is optional */
  expect_info_out_of_range(otter_session_input_info, s, n, __LINE__);
  expect_info_out_of_range(otter_session_input_info, s, (size_t)-1, __LINE__);

  /* outputs: logits float32 [-1, 10] */
  n = 777;
  CHECK_ERR(otter_session_output_count(NULL, &n), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_output_count(s, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(n == 777);
  CHECK(CHECK_OK(otter_session_output_count(s, &n)) && n == 1);
  CHECK_OK(otter_session_output_info(s, 0, &name, &dtype, &ndim, &shape));
  CHECK(strcmp(name, "logits") == 0 && dtype == OTTER_DTYPE_FLOAT32 && ndim == 2 && shape[0] == -1 &&
        shape[1] == CLASSES);
  CHECK_OK(otter_session_output_info(s, 0, NULL, NULL, NULL, NULL));
  expect_info_out_of_range(otter_session_output_info, s, n, __LINE__);

  /* parameters: the MLP's 4 initializers, float32, 64*64 + 64 + 10*64 + 10 values */
  n = 777;
  CHECK_ERR(otter_session_parameter_count(NULL, &n), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_parameter_count(s, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(n == 777);
  CHECK(CHECK_OK(otter_session_parameter_count(s, &n)) && n == 4);
  for (i = 0; i < n; ++i) {
    size_t count = 1;
    int32_t k;
    CHECK_OK(otter_session_parameter_info(s, i, &name, &dtype, &ndim, &shape));
    CHECK(name != NULL && name[0] != '\0' && dtype == OTTER_DTYPE_FLOAT32 && ndim >= 1 && ndim <= 2);
    for (k = 0; k < ndim; ++k) {
      CHECK(shape[k] > 0);
      count *= (size_t)shape[k];
    }
    total += count;
  }
  CHECK(total == 64 * 64 + 64 + 10 * 64 + 10);
  expect_info_out_of_range(otter_session_parameter_info, s, n, __LINE__);

  /* forward nodes: Gemm, Relu, Gemm in float32, then the loss */
  n = 777;
  CHECK_ERR(otter_session_node_count(NULL, &n), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_node_count(s, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(n == 777);
  CHECK(CHECK_OK(otter_session_node_count(s, &n)) && n >= 4);
  for (i = 0; i < n; ++i) {
    const char* op = NULL;
    const char* cdt = NULL;
    name = NULL;
    CHECK_OK(otter_session_node_info(s, i, &name, &op, &cdt));
    CHECK(name != NULL && op != NULL && op[0] != '\0' && cdt != NULL && cdt[0] != '\0');
    if (i < 3 && op && cdt) {
      static const char* const ops[3] = {"Gemm", "Relu", "Gemm"};
      check_at(__FILE__, __LINE__, strcmp(op, ops[i]) == 0 && strcmp(cdt, "float32") == 0,
               "node %u is %s computing in %s; expected %s in float32", (unsigned)i, op, cdt, ops[i]);
    }
  }
  CHECK_OK(otter_session_node_info(s, 0, NULL, NULL, NULL));
  {
    const char* reason = (const char*)SENTINEL_PTR;
    CHECK(CHECK_OK(otter_session_node_precision(s, 0, &reason)) && reason != NULL && reason[0] != '\0');
    reason = (const char*)SENTINEL_PTR;
    CHECK_ERR(otter_session_node_precision(s, n, &reason), OTTER_ERROR_INVALID_ARGUMENT, "range");
    CHECK_ERR(otter_session_node_precision(NULL, 0, &reason), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
    CHECK_ERR(otter_session_node_precision(s, 0, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
    CHECK(reason == (const char*)SENTINEL_PTR);
  }
  {
    const char* a = (const char*)SENTINEL_PTR;
    const char* b = (const char*)SENTINEL_PTR;
    const char* c = (const char*)SENTINEL_PTR;
    CHECK_ERR(otter_session_node_info(s, n, &a, &b, &c), OTTER_ERROR_INVALID_ARGUMENT, "range");
    CHECK_ERR(otter_session_node_info(NULL, 0, &a, &b, &c), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
    CHECK(a == (const char*)SENTINEL_PTR && b == (const char*)SENTINEL_PTR && c == (const char*)SENTINEL_PTR);
  }
}

static void expect_stat(const otter_session* s, const char* key, double want, int line) {
  double v = SENTINEL_D;
  otter_status st = otter_session_get_stat(s, key, &v);
  check_at(__FILE__, line, st == OTTER_OK && v == want, "get_stat(%s) = %s, %g; expected %g", key,
           otter_status_name(st), v, want);
}

/* One bad train_step: fails with `want` (message containing `needle`), *out_loss untouched. */
static void expect_train_fails(otter_session* s, size_t n, const char* const* names, const otter_tensor_view* inputs,
                               otter_status want, const char* needle, int line) {
  double loss = SENTINEL_D;
  check_err_at(__FILE__, line, otter_session_train_step(s, n, names, inputs, &loss), want, needle, "train_step");
  check_at(__FILE__, line, loss == SENTINEL_D, "out_loss changed on error");
}

static void test_train_errors(otter_session* s) {
  otter_tensor_view in[3];
  const char* names[3] = {"x", "label", "x"};
  static const int64_t bad_x_shape[2] = {BATCH, FEATURES - 1};
  static const int64_t short_y_shape[1] = {BATCH - 1};
  static const int64_t neg_shape[2] = {-BATCH, FEATURES};
  static double x64[BATCH * FEATURES];
  static int32_t y32[BATCH];
  static float yf[BATCH];
  int64_t y_bad[BATCH];
  const char* null_name[2] = {"x", NULL};
  const char* unknown[3] = {"x", "label", "bogus"};
  double v = SENTINEL_D;
  int i;

  for (i = 0; i < BATCH; ++i) {
    y32[i] = (int32_t)g_y[i];
    yf[i] = (float)g_y[i];
  }

  CHECK_ERR(otter_session_get_stat(s, "last_loss", &v), OTTER_ERROR_WRONG_STATE, "last_loss");
  CHECK_ERR(otter_session_get_stat(s, "no_such_stat", &v), OTTER_ERROR_NOT_FOUND, "no_such_stat");
  CHECK_ERR(otter_session_get_stat(NULL, "step", &v), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_get_stat(s, NULL, &v), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_get_stat(s, "step", NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(v == SENTINEL_D);
  expect_stat(s, "step", 0, __LINE__);
  expect_stat(s, "micro_step", 0, __LINE__);
  expect_stat(s, "loss_scale", 1, __LINE__);
  expect_stat(s, "skipped_steps", 0, __LINE__);

  batch_views(in);
  /* NULL session, names, inputs, name */
  CHECK_ERR(otter_session_train_step(NULL, 2, g_names_xy, in, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  expect_train_fails(s, 2, NULL, in, OTTER_ERROR_INVALID_ARGUMENT, "NULL", __LINE__);
  expect_train_fails(s, 2, g_names_xy, NULL, OTTER_ERROR_INVALID_ARGUMENT, "NULL", __LINE__);
  expect_train_fails(s, 2, null_name, in, OTTER_ERROR_INVALID_ARGUMENT, "NULL", __LINE__);
  /* wrong shape and wrong dtype of x: the message names the input */
  in[0] = view(g_x, OTTER_DTYPE_FLOAT32, 2, bad_x_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  in[0] = view(g_x, OTTER_DTYPE_FLOAT32, 1, g_x_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  in[0] = view(x64, OTTER_DTYPE_FLOAT64, 2, g_x_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  in[0] = view(g_x, (otter_dtype)99, 2, g_x_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  in[0] = view(g_x, OTTER_DTYPE_FLOAT32, 2, NULL);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  in[0] = view(g_x, OTTER_DTYPE_FLOAT32, 2, neg_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  in[0] = view(g_x, OTTER_DTYPE_FLOAT32, -1, g_x_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  in[0] = view(NULL, OTTER_DTYPE_FLOAT32, 2, g_x_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  in[0] = view(g_x, OTTER_DTYPE_FLOAT32, 2, g_x_shape);
  in[0].device_type = OTTER_DEVICE_CUDA;
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_UNSUPPORTED, "'x'", __LINE__);
  /* wrong dtype and batch of the label */
  batch_views(in);
  in[1] = view(y32, OTTER_DTYPE_INT32, 1, g_y_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "label", __LINE__);
  in[1] = view(yf, OTTER_DTYPE_FLOAT32, 1, g_y_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "label", __LINE__);
  in[1] = view(g_y, OTTER_DTYPE_INT64, 1, short_y_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "label", __LINE__);
  /* missing label, missing x, no inputs */
  batch_views(in);
  expect_train_fails(s, 1, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "label", __LINE__);
  expect_train_fails(s, 1, g_names_xy + 1, in + 1, OTTER_ERROR_INVALID_ARGUMENT, "'x'", __LINE__);
  expect_train_fails(s, 0, NULL, NULL, OTTER_ERROR_INVALID_ARGUMENT, NULL, __LINE__);
  /* an input given twice, an unknown input */
  in[2] = in[0];
  expect_train_fails(s, 3, names, in, OTTER_ERROR_INVALID_ARGUMENT, "twice", __LINE__);
  expect_train_fails(s, 3, unknown, in, OTTER_ERROR_INVALID_ARGUMENT, "bogus", __LINE__);
  /* labels out of range: the message names the label */
  memcpy(y_bad, g_y, sizeof y_bad);
  y_bad[BATCH - 1] = CLASSES;
  in[1] = view(y_bad, OTTER_DTYPE_INT64, 1, g_y_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "label", __LINE__);
  y_bad[BATCH - 1] = -1;
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "label", __LINE__);

  /* nothing changed */
  expect_stat(s, "step", 0, __LINE__);
  expect_stat(s, "micro_step", 0, __LINE__);
  CHECK_ERR(otter_session_get_stat(s, "last_loss", &v), OTTER_ERROR_WRONG_STATE, "last_loss");
}

/* Evaluates the fixed batch (with the label when `with_label`); returns the loss or NAN. */
static double eval_loss(otter_session* s, int with_label, float* logits_out) {
  otter_tensor_view in[2];
  otter_tensor_list* out = NULL;
  double loss = SENTINEL_D;
  int has = -1;
  otter_tensor_view v;
  const char* name = NULL;
  batch_views(in);
  if (!CHECK_OK(otter_session_eval_step(s, with_label ? 2 : 1, g_names_xy, in, &out, &loss, &has))) return NAN;
  CHECK(has == (with_label ? 1 : 0));
  if (!with_label) CHECK(loss == SENTINEL_D);
  if (CHECK_OK(otter_tensor_list_get(out, 0, &name, &v)) && logits_out)
    memcpy(logits_out, v.data, sizeof(float) * BATCH * CLASSES);
  otter_tensor_list_free(out);
  return with_label ? loss : NAN;
}

static void test_train(otter_session* s) {
  otter_tensor_view in[2];
  double losses[STEPS];
  double v = SENTINEL_D, lr = SENTINEL_D;
  param_set before, after;
  int i, finite = 1, monotone = 1;

  params_get(s, s, &before);
  batch_views(in);
  for (i = 0; i < STEPS; ++i) {
    losses[i] = SENTINEL_D;
    CHECK_OK(otter_session_train_step(s, 2, g_names_xy, in, &losses[i]));
    finite = finite && isfinite(losses[i]);
    monotone = monotone && (i == 0 || losses[i] < losses[i - 1]);
  }
  CHECK_MSG(finite, "every training loss is finite");
  CHECK_MSG(losses[0] > 1.5 && losses[0] < 4.0, "first loss near ln(10)");
  /* full-batch SGD at lr 0.1 on this batch: every step lowers the loss (2.33 -> 1.93 in NumPy) */
  CHECK_MSG(monotone, "the loss decreases at every step");
  CHECK_MSG(losses[STEPS - 1] < 0.9 * losses[0], "the loss decreases by more than 10% over 50 steps");
  printf("capi: loss %.4f -> %.4f over %d steps\n", losses[0], losses[STEPS - 1], STEPS);
  params_get(s, s, &after);
  CHECK_MSG(!params_equal(&before, &after), "training changed the parameters");
  params_free(&before);
  params_free(&after);

  expect_stat(s, "step", STEPS, __LINE__);
  expect_stat(s, "micro_step", 0, __LINE__);
  expect_stat(s, "last_loss", losses[STEPS - 1], __LINE__);
  expect_stat(s, "learning_rate", 0.1, __LINE__);
  expect_stat(s, "loss_scale", 1, __LINE__);
  expect_stat(s, "skipped_steps", 0, __LINE__);
  CHECK(CHECK_OK(otter_session_get_stat(s, "grad_norm", &v)) && v == 0); /* no clip_norm: not computed */
  CHECK(CHECK_OK(otter_session_get_stat(s, "arena_bytes", &v)) && v > 0 && v < 1e9);
  CHECK(CHECK_OK(otter_session_get_stat(s, "intermediate_bytes", &v)) && v > 0 && v < 1e9);
  expect_stat(s, "captured_steps", 0, __LINE__);    /* CUDA only */
  expect_stat(s, "device_peak_bytes", 0, __LINE__); /* a CPU session */
  double planned = -1;                               /* the training plan was built at the first step */
  CHECK(CHECK_OK(otter_session_get_stat(s, "plan_seconds", &planned)) && planned > 0 && planned < 60);

  /* a step with out_loss NULL */
  CHECK_OK(otter_session_train_step(s, 2, g_names_xy, in, NULL));
  expect_stat(s, "step", STEPS + 1, __LINE__);
  expect_stat(s, "plan_seconds", planned, __LINE__); /* the same shapes: the plan is reused */
  CHECK(CHECK_OK(otter_session_get_stat(s, "last_loss", &v)) && isfinite(v) && v < losses[0]);

  /* learning rate */
  CHECK_ERR(otter_session_get_learning_rate(NULL, &lr), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_get_learning_rate(s, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(lr == SENTINEL_D);
  CHECK(CHECK_OK(otter_session_get_learning_rate(s, &lr)) && lr == 0.1);
  CHECK_OK(otter_session_set_learning_rate(s, 0.0375));
  CHECK(CHECK_OK(otter_session_get_learning_rate(s, &lr)) && lr == 0.0375);
  expect_stat(s, "learning_rate", 0.0375, __LINE__);
  CHECK_ERR(otter_session_set_learning_rate(NULL, 0.1), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_set_learning_rate(s, -1.0), OTTER_ERROR_INVALID_ARGUMENT, NULL);
  CHECK_ERR(otter_session_set_learning_rate(s, NAN), OTTER_ERROR_INVALID_ARGUMENT, NULL);
  CHECK_ERR(otter_session_set_learning_rate(s, INFINITY), OTTER_ERROR_INVALID_ARGUMENT, NULL);
  CHECK(CHECK_OK(otter_session_get_learning_rate(s, &lr)) && lr == 0.0375);
  CHECK_OK(otter_session_set_learning_rate(s, 0.1));
}

static void test_eval(otter_session* s) {
  otter_tensor_view in[2], v, v2;
  static const int64_t five[2] = {5, FEATURES};
  static const int64_t bad[2] = {BATCH, 3};
  otter_tensor_list* out = NULL;
  otter_tensor_list* keep = (otter_tensor_list*)SENTINEL_PTR;
  const char* name = NULL;
  size_t n = 777;
  double loss = SENTINEL_D, step_before = 0, step_after = -1;
  int has = -1, i, finite = 1;
  float logits[BATCH * CLASSES];

  CHECK_OK(otter_session_get_stat(s, "step", &step_before));
  batch_views(in);
  /* without the label: one output "logits" [B, 10]; no loss */
  REQUIRE(CHECK_OK(otter_session_eval_step(s, 1, g_names_xy, in, &out, &loss, &has)));
  CHECK(out != NULL && has == 0 && loss == SENTINEL_D);
  CHECK_ERR(otter_tensor_list_size(NULL, &n), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_tensor_list_size(out, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(n == 777);
  CHECK(CHECK_OK(otter_tensor_list_size(out, &n)) && n == 1);
  CHECK_OK(otter_tensor_list_get(out, 0, &name, &v));
  CHECK(strcmp(name, "logits") == 0 && v.dtype == OTTER_DTYPE_FLOAT32 && v.ndim == 2 && v.shape != NULL &&
        v.shape[0] == BATCH && v.shape[1] == CLASSES && v.device_type == OTTER_DEVICE_CPU && v.device_id == 0 &&
        v.data != NULL);
  for (i = 0; i < BATCH * CLASSES; ++i) finite = finite && isfinite(((const float*)v.data)[i]);
  CHECK_MSG(finite, "logits are finite");
  memcpy(logits, v.data, sizeof logits);
  CHECK_OK(otter_tensor_list_get(out, 0, NULL, &v2)); /* out_name is optional */
  CHECK(v2.data == v.data);
  /* out-of-range index, NULL list, NULL view: out-params untouched */
  name = (const char*)SENTINEL_PTR;
  memset(&v2, 0x5e, sizeof v2);
  memcpy(&v, &v2, sizeof v);
  CHECK_ERR(otter_tensor_list_get(out, 1, &name, &v), OTTER_ERROR_INVALID_ARGUMENT, "range");
  CHECK_ERR(otter_tensor_list_get(out, (size_t)-1, &name, &v), OTTER_ERROR_INVALID_ARGUMENT, "range");
  CHECK_ERR(otter_tensor_list_get(NULL, 0, &name, &v), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_tensor_list_get(out, 0, &name, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(name == (const char*)SENTINEL_PTR && memcmp(&v, &v2, sizeof v) == 0);
  otter_tensor_list_free(out);
  otter_tensor_list_free(NULL);

  /* with the label: has_loss = 1 and the loss is the cross entropy of the logits */
  out = NULL;
  REQUIRE(CHECK_OK(otter_session_eval_step(s, 2, g_names_xy, in, &out, &loss, &has)));
  CHECK(has == 1 && isfinite(loss));
  {
    double ce = cross_entropy(logits, g_y, BATCH);
    check_at(__FILE__, __LINE__, fabs(loss - ce) <= 1e-5 * (1 + fabs(ce)), "eval loss %.9g != C cross entropy %.9g",
             loss, ce);
  }
  otter_tensor_list_free(out);
  /* with the label but out_loss NULL: no loss */
  out = NULL;
  has = -1;
  CHECK_OK(otter_session_eval_step(s, 2, g_names_xy, in, &out, NULL, &has));
  CHECK(has == 0);
  otter_tensor_list_free(out);
  /* both loss out-params NULL */
  out = NULL;
  CHECK_OK(otter_session_eval_step(s, 2, g_names_xy, in, &out, NULL, NULL));
  otter_tensor_list_free(out);

  /* another batch size */
  in[0] = view(g_x, OTTER_DTYPE_FLOAT32, 2, five);
  out = NULL;
  if (CHECK_OK(otter_session_eval_step(s, 1, g_names_xy, in, &out, NULL, NULL))) {
    CHECK(CHECK_OK(otter_tensor_list_get(out, 0, NULL, &v)) && v.ndim == 2 && v.shape[0] == 5 &&
          v.shape[1] == CLASSES);
    CHECK(memcmp(v.data, logits, sizeof(float) * 5 * CLASSES) == 0 ||
          fabs(((const float*)v.data)[0] - logits[0]) < 1e-5);
    otter_tensor_list_free(out);
  }

  /* errors: out-params untouched */
  batch_views(in);
  loss = SENTINEL_D;
  has = -1;
  CHECK_ERR(otter_session_eval_step(NULL, 1, g_names_xy, in, &keep, &loss, &has), OTTER_ERROR_INVALID_ARGUMENT,
            "NULL");
  CHECK_ERR(otter_session_eval_step(s, 1, g_names_xy, in, NULL, &loss, &has), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  in[0] = view(g_x, OTTER_DTYPE_FLOAT32, 2, bad);
  CHECK_ERR(otter_session_eval_step(s, 2, g_names_xy, in, &keep, &loss, &has), OTTER_ERROR_INVALID_ARGUMENT, "'x'");
  CHECK_ERR(otter_session_eval_step(s, 0, NULL, NULL, &keep, &loss, &has), OTTER_ERROR_INVALID_ARGUMENT, NULL);
  CHECK(keep == (otter_tensor_list*)SENTINEL_PTR && loss == SENTINEL_D && has == -1);

  /* eval changes no state */
  CHECK(CHECK_OK(otter_session_get_stat(s, "step", &step_after)) && step_after == step_before);
}

static void test_parameters(otter_session* s) {
  const char* name = NULL;
  otter_dtype dtype;
  int32_t ndim = 0;
  const int64_t* shape = NULL;
  float *orig, *val, *back;
  size_t n = 1, bytes, i;
  int32_t k;
  otter_tensor_view tv;
  static const int64_t wrong_shape[1] = {3};
  static double f64[64 * 64];

  /* parameter 0 (fc1.weight, [64, 64]) */
  REQUIRE(CHECK_OK(otter_session_parameter_info(s, 0, &name, &dtype, &ndim, &shape)));
  for (k = 0; k < ndim; ++k) n *= (size_t)shape[k];
  REQUIRE(n <= 64 * 64);
  bytes = n * sizeof(float);
  orig = (float*)malloc(bytes);
  val = (float*)malloc(bytes);
  back = (float*)malloc(bytes);
  REQUIRE(orig && val && back);

  CHECK_OK(otter_session_get_parameter(s, name, orig, bytes));
  /* errors: wrong size (message names the parameter), unknown name, NULLs; the buffer untouched */
  memset(back, 0x5e, bytes);
  memset(val, 0x5e, bytes);
  CHECK_ERR(otter_session_get_parameter(s, name, back, bytes - 4), OTTER_ERROR_INVALID_ARGUMENT, name);
  CHECK_ERR(otter_session_get_parameter(s, name, back, bytes + 4), OTTER_ERROR_INVALID_ARGUMENT, name);
  CHECK_ERR(otter_session_get_parameter(s, name, back, 0), OTTER_ERROR_INVALID_ARGUMENT, name);
  CHECK_ERR(otter_session_get_parameter(s, "no_such_param", back, bytes), OTTER_ERROR_NOT_FOUND, "no_such_param");
  CHECK_ERR(otter_session_get_parameter(NULL, name, back, bytes), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_get_parameter(s, NULL, back, bytes), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_get_parameter(s, name, NULL, bytes), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(memcmp(back, val, bytes) == 0);

  /* set/get round trip */
  for (i = 0; i < n; ++i) val[i] = (float)i * 0.001f - 1.0f;
  tv = view(val, OTTER_DTYPE_FLOAT32, ndim, shape);
  CHECK_OK(otter_session_set_parameter(s, name, &tv));
  CHECK(CHECK_OK(otter_session_get_parameter(s, name, back, bytes)) && memcmp(back, val, bytes) == 0);
  /* errors leave the parameter as it is */
  tv = view(val, OTTER_DTYPE_FLOAT32, 1, wrong_shape);
  CHECK_ERR(otter_session_set_parameter(s, name, &tv), OTTER_ERROR_INVALID_ARGUMENT, name);
  tv = view(f64, OTTER_DTYPE_FLOAT64, ndim, shape);
  CHECK_ERR(otter_session_set_parameter(s, name, &tv), OTTER_ERROR_INVALID_ARGUMENT, name);
  tv = view(NULL, OTTER_DTYPE_FLOAT32, ndim, shape);
  CHECK_ERR(otter_session_set_parameter(s, name, &tv), OTTER_ERROR_INVALID_ARGUMENT, name);
  tv = view(val, OTTER_DTYPE_FLOAT32, ndim, shape);
  CHECK_ERR(otter_session_set_parameter(s, "no_such_param", &tv), OTTER_ERROR_NOT_FOUND, "no_such_param");
  CHECK_ERR(otter_session_set_parameter(NULL, name, &tv), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_set_parameter(s, NULL, &tv), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_set_parameter(s, name, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK(CHECK_OK(otter_session_get_parameter(s, name, back, bytes)) && memcmp(back, val, bytes) == 0);
  /* restore */
  tv = view(orig, OTTER_DTYPE_FLOAT32, ndim, shape);
  CHECK_OK(otter_session_set_parameter(s, name, &tv));
  CHECK(CHECK_OK(otter_session_get_parameter(s, name, back, bytes)) && memcmp(back, orig, bytes) == 0);
  free(orig);
  free(val);
  free(back);
}

static otter_session* new_session(void) {
  otter_options* o = make_options(NULL, NULL);
  otter_session* s = NULL;
  REQUIRE(CHECK_OK(otter_session_create_from_file(g_model_path, o, &s)) && s != NULL);
  otter_options_free(o); /* sessions keep their own copy */
  return s;
}

/* otter_checkpoint_export: MODEL + the parameters of CHECKPOINT, without a session. */
static void test_checkpoint_export(const char* ckpt, const param_set* want) {
  const char* out = tmp_path("from_checkpoint.onnx");
  otter_session* s = NULL;
  otter_options* o;
  param_set got;

  CHECK_ERR(otter_checkpoint_export(NULL, g_model_path, out), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_checkpoint_export(ckpt, NULL, out), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_checkpoint_export(ckpt, g_model_path, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_checkpoint_export("/nonexistent/otter/ckpt", g_model_path, out), OTTER_ERROR_NOT_FOUND,
            "/nonexistent/otter/ckpt");
  CHECK_ERR(otter_checkpoint_export(ckpt, "/nonexistent/otter/model.onnx", out), OTTER_ERROR_NOT_FOUND,
            "/nonexistent/otter/model.onnx");
  CHECK_ERR(otter_checkpoint_export(g_model_path, g_model_path, out), OTTER_ERROR_INVALID_ARGUMENT, NULL);
  CHECK_ERR(otter_checkpoint_export(ckpt, g_model_path, "/nonexistent/otter/dir/out.onnx"), OTTER_ERROR_IO,
            "/nonexistent/otter/dir");
  CHECK_ERR(otter_checkpoint_export(ckpt, g_model_path, tmp_dir_path()), OTTER_ERROR_IO, "a_directory");
  CHECK(!tmp_left_behind(tmp_dir_path()));
  CHECK(!file_exists(out));
  REQUIRE(CHECK_OK(otter_checkpoint_export(ckpt, g_model_path, out)));
  o = make_options(NULL, NULL);
  if (CHECK_OK(otter_session_create_from_file(out, o, &s))) {
    params_get(s, s, &got);
    CHECK_MSG(params_equal(&got, want), "checkpoint_export writes the checkpoint's parameters");
    params_free(&got);
    otter_session_free(s);
  }
  otter_options_free(o);
}

static void test_checkpoint(otter_session* s) {
  const char* ckpt = tmp_path("ckpt.otter");
  char tmp[4300];
  otter_session* fresh = new_session();
  param_set saved, saved_copy, loaded, initial;
  otter_tensor_view in[2];
  double v = SENTINEL_D, l1 = SENTINEL_D, l2 = SENTINEL_D, step = -1;

  CHECK_ERR(otter_session_save_checkpoint(NULL, ckpt), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_save_checkpoint(s, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_save_checkpoint(s, "/nonexistent/otter/dir/ckpt"), OTTER_ERROR_IO, "/nonexistent/otter/dir");
  CHECK_ERR(otter_session_save_checkpoint(s, tmp_dir_path()), OTTER_ERROR_IO, "a_directory");
  CHECK(!tmp_left_behind(tmp_dir_path()));

  params_get(s, s, &saved);
  params_get(s, s, &saved_copy);
  CHECK_OK(otter_session_get_stat(s, "step", &step));
  REQUIRE(CHECK_OK(otter_session_save_checkpoint(s, ckpt)));
  snprintf(tmp, sizeof tmp, "%s.tmp", ckpt);
  CHECK(file_exists(ckpt) && !file_exists(tmp));

  /* errors change nothing */
  params_get(fresh, fresh, &initial);
  CHECK_MSG(!params_equal(&initial, &saved), "a fresh session has the untrained parameters");
  CHECK_ERR(otter_session_load_checkpoint(fresh, "/nonexistent/otter/ckpt"), OTTER_ERROR_NOT_FOUND,
            "/nonexistent/otter/ckpt");
  CHECK_ERR(otter_session_load_checkpoint(fresh, g_model_path), OTTER_ERROR_INVALID_ARGUMENT, NULL);
  CHECK_ERR(otter_session_load_checkpoint(NULL, ckpt), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_load_checkpoint(fresh, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  {
    /* a truncated checkpoint */
    const char* cut = tmp_path("truncated.otter");
    size_t size = 0;
    unsigned char* bytes = read_file(ckpt, &size);
    FILE* f = fopen(cut, "wb");
    REQUIRE(bytes != NULL && f != NULL);
    CHECK(fwrite(bytes, 1, size / 2, f) == size / 2);
    fclose(f);
    free(bytes);
    CHECK_ERR(otter_session_load_checkpoint(fresh, cut), OTTER_ERROR_INVALID_ARGUMENT, "truncated");
  }
  {
    /* a checkpoint of another optimizer */
    otter_options* o = make_options("optimizer", "adam");
    otter_session* adam = NULL;
    param_set p0, p1;
    if (CHECK_OK(otter_session_create_from_file(g_model_path, o, &adam))) {
      params_get(adam, adam, &p0);
      check_at(__FILE__, __LINE__, otter_session_load_checkpoint(adam, ckpt) != OTTER_OK,
               "an adam session loads an sgd checkpoint");
      CHECK(strstr(otter_last_error(), "adam") != NULL);
      params_get(adam, adam, &p1);
      CHECK_MSG(params_equal(&p0, &p1), "a mismatched checkpoint changes nothing");
      expect_stat(adam, "step", 0, __LINE__);
      params_free(&p0);
      params_free(&p1);
      otter_session_free(adam);
    }
    otter_options_free(o);
  }
  params_get(fresh, fresh, &loaded);
  CHECK_MSG(params_equal(&loaded, &initial), "failed loads change nothing");
  expect_stat(fresh, "step", 0, __LINE__);
  params_free(&loaded);
  params_free(&initial);

  /* the round trip: bit-exact parameters, the step count, and the same next step */
  REQUIRE(CHECK_OK(otter_session_load_checkpoint(fresh, ckpt)));
  params_get(fresh, fresh, &loaded);
  CHECK_MSG(params_equal(&loaded, &saved), "parameters round-trip exactly through a checkpoint");
  expect_stat(fresh, "step", step, __LINE__);
  CHECK(CHECK_OK(otter_session_get_learning_rate(fresh, &v)) && v == 0.1);
  batch_views(in);
  CHECK_OK(otter_session_train_step(s, 2, g_names_xy, in, &l1));
  CHECK_OK(otter_session_train_step(fresh, 2, g_names_xy, in, &l2));
  check_at(__FILE__, __LINE__, l1 == l2, "the step after a checkpoint differs: %.17g vs %.17g", l1, l2);
  params_free(&loaded);
  params_free(&saved);
  params_get(s, s, &saved);
  params_get(fresh, fresh, &loaded);
  CHECK_MSG(params_equal(&loaded, &saved), "and so do the parameters after it");
  params_free(&loaded);
  params_free(&saved);
  otter_session_free(fresh);
  otter_session_free(NULL);
  test_checkpoint_export(ckpt, &saved_copy);
  params_free(&saved_copy);
}

static void test_export(otter_session* s) {
  const char* path = tmp_path("exported.onnx");
  otter_session* again = (otter_session*)SENTINEL_PTR;
  param_set a, b;
  float la[BATCH * CLASSES], lb[BATCH * CLASSES];
  otter_options* o;

  CHECK_ERR(otter_session_export(NULL, path), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_export(s, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_session_export(s, "/nonexistent/otter/dir/model.onnx"), OTTER_ERROR_IO, "/nonexistent/otter/dir");
  CHECK_ERR(otter_session_export(s, tmp_dir_path()), OTTER_ERROR_IO, "a_directory");
  CHECK(!tmp_left_behind(tmp_dir_path()));
  REQUIRE(CHECK_OK(otter_session_export(s, path)));
  CHECK(file_exists(path));

  o = make_options(NULL, NULL);
  REQUIRE(CHECK_OK(otter_session_create_from_file(path, o, &again)) && again != NULL);
  otter_options_free(o);
  params_get(s, s, &a);
  params_get(again, again, &b);
  CHECK_MSG(params_equal(&a, &b), "the exported model holds the trained parameters");
  params_free(&a);
  params_free(&b);
  eval_loss(s, 0, la);
  eval_loss(again, 0, lb);
  CHECK_MSG(memcmp(la, lb, sizeof la) == 0, "the exported model computes the same logits");
  otter_session_free(again);
}

/* otter_npz_load / otter_npz_save, and tensor-list views fed back as inputs. */
static void test_npz(otter_session* s) {
  char train[4200];
  const char* saved = tmp_path("batch.npz");
  char tmp[4300];
  otter_tensor_list* list = (otter_tensor_list*)SENTINEL_PTR;
  otter_tensor_list* out = NULL;
  otter_tensor_view in[2], x, y;
  const char* name = NULL;
  const char* names[2] = {"x", "label"};
  size_t n = 0;
  int i, ok = 1;
  double loss = SENTINEL_D;
  int has = -1;

  snprintf(train, sizeof train, "%s/train.npz", g_data_dir);
  CHECK_ERR(otter_npz_load(NULL, &list), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_npz_load(train, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_npz_load("/nonexistent/otter/data.npz", &list), OTTER_ERROR_NOT_FOUND, "/nonexistent/otter/data.npz");
  CHECK_ERR(otter_npz_load(g_model_path, &list), OTTER_ERROR_INVALID_ARGUMENT, "mlp.onnx");
  CHECK(list == (otter_tensor_list*)SENTINEL_PTR);

  /* train.npz: x float32 [1500, 64], y int64 [1500] in [0, 10), in name order */
  REQUIRE(CHECK_OK(otter_npz_load(train, &list)) && list != NULL);
  CHECK(CHECK_OK(otter_tensor_list_size(list, &n)) && n == 2);
  CHECK(CHECK_OK(otter_tensor_list_get(list, 0, &name, &x)) && strcmp(name, "x") == 0);
  CHECK(CHECK_OK(otter_tensor_list_get(list, 1, &name, &y)) && strcmp(name, "y") == 0);
  REQUIRE(x.dtype == OTTER_DTYPE_FLOAT32 && x.ndim == 2 && x.shape[0] == 1500 && x.shape[1] == FEATURES);
  REQUIRE(y.dtype == OTTER_DTYPE_INT64 && y.ndim == 1 && y.shape[0] == 1500);
  CHECK(x.device_type == OTTER_DEVICE_CPU && y.device_type == OTTER_DEVICE_CPU);
  for (i = 0; i < 1500; ++i) ok = ok && ((const int64_t*)y.data)[i] >= 0 && ((const int64_t*)y.data)[i] < CLASSES;
  for (i = 0; i < 1500 * FEATURES; ++i) ok = ok && isfinite(((const float*)x.data)[i]);
  CHECK_MSG(ok, "train.npz holds finite x and labels in [0, 10)");
  /* its views are inputs as they are */
  in[0] = x;
  in[1] = y;
  if (CHECK_OK(otter_session_eval_step(s, 2, names, in, &out, &loss, &has))) {
    otter_tensor_view v;
    CHECK(has == 1 && isfinite(loss) && loss > 0);
    CHECK(CHECK_OK(otter_tensor_list_get(out, 0, NULL, &v)) && v.ndim == 2 && v.shape[0] == 1500 &&
          v.shape[1] == CLASSES);
    otter_tensor_list_free(out);
  }
  otter_tensor_list_free(list);

  /* save the batch and read it back */
  batch_views(in);
  CHECK_ERR(otter_npz_save(NULL, 2, names, in), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_npz_save(saved, 2, NULL, in), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_npz_save(saved, 2, names, NULL), OTTER_ERROR_INVALID_ARGUMENT, "NULL");
  CHECK_ERR(otter_npz_save("/nonexistent/otter/dir/a.npz", 2, names, in), OTTER_ERROR_IO, "/nonexistent/otter/dir");
  CHECK_ERR(otter_npz_save(tmp_dir_path(), 2, names, in), OTTER_ERROR_IO, "a_directory");
  CHECK(!tmp_left_behind(tmp_dir_path()));
  in[1].dtype = (otter_dtype)99;
  CHECK_ERR(otter_npz_save(saved, 2, names, in), OTTER_ERROR_INVALID_ARGUMENT, "label");
  CHECK(!file_exists(saved));
  batch_views(in);
  REQUIRE(CHECK_OK(otter_npz_save(saved, 2, names, in)));
  snprintf(tmp, sizeof tmp, "%s.tmp", saved);
  CHECK(file_exists(saved) && !file_exists(tmp));
  list = NULL;
  REQUIRE(CHECK_OK(otter_npz_load(saved, &list)));
  CHECK(CHECK_OK(otter_tensor_list_size(list, &n)) && n == 2);
  /* name order: label, x */
  CHECK(CHECK_OK(otter_tensor_list_get(list, 0, &name, &y)) && strcmp(name, "label") == 0 &&
        y.dtype == OTTER_DTYPE_INT64 && y.ndim == 1 && y.shape[0] == BATCH && memcmp(y.data, g_y, sizeof g_y) == 0);
  CHECK(CHECK_OK(otter_tensor_list_get(list, 1, &name, &x)) && strcmp(name, "x") == 0 &&
        x.dtype == OTTER_DTYPE_FLOAT32 && x.ndim == 2 && x.shape[0] == BATCH && x.shape[1] == FEATURES &&
        memcmp(x.data, g_x, sizeof g_x) == 0);
  otter_tensor_list_free(list);
  /* no arrays at all */
  CHECK_OK(otter_npz_save(saved, 0, NULL, NULL));
  list = NULL;
  CHECK(CHECK_OK(otter_npz_load(saved, &list)) && CHECK_OK(otter_tensor_list_size(list, &n)) && n == 0);
  otter_tensor_list_free(list);
}


/* Reliability (docs/reliability.md): overflowing shapes, non-finite gradients, checkpoint metadata
 * of the caller, outputs that would replace inputs. */
static void test_reliability(void) {
  static const int64_t huge_shape[2] = {(int64_t)1 << 61, 64}; /* 2^67 bytes: wraps to 0 unchecked */
  static float x_nan[BATCH * FEATURES];
  otter_session* s = new_session();
  otter_tensor_view in[2];
  param_set before, after;
  const char* value = NULL;
  const char* ckpt = tmp_path("reliability.ckpt");
  double loss = SENTINEL_D, v = 0;
  otter_options* o;
  otter_session* skip = NULL;

  /* A view whose byte count overflows is refused before any kernel reads from NULL. */
  batch_views(in);
  in[0] = view(NULL, OTTER_DTYPE_FLOAT32, 2, huge_shape);
  expect_train_fails(s, 2, g_names_xy, in, OTTER_ERROR_INVALID_ARGUMENT, "overflows", __LINE__);

  /* NaN in the features: the step is skipped (weights unchanged) and reported (nonfinite=error). */
  memcpy(x_nan, g_x, sizeof x_nan);
  x_nan[5 * FEATURES + 3] = NAN;
  params_get(s, s, &before);
  batch_views(in);
  in[0] = view(x_nan, OTTER_DTYPE_FLOAT32, 2, g_x_shape);
  CHECK_ERR(otter_session_train_step(s, 2, g_names_xy, in, &loss), OTTER_ERROR_NON_FINITE, "NaN or Inf");
  params_get(s, s, &after);
  CHECK_MSG(params_equal(&before, &after), "a non-finite step changed the weights");
  params_free(&after);
  expect_stat(s, "step", 0, __LINE__);
  expect_stat(s, "skipped_steps", 1, __LINE__);
  /* The session goes on with good data. */
  batch_views(in);
  CHECK_OK(otter_session_train_step(s, 2, g_names_xy, in, &loss));
  expect_stat(s, "step", 1, __LINE__);

  /* nonfinite=skip: the same step only counts as skipped. */
  o = make_options("nonfinite", "skip");
  REQUIRE(CHECK_OK(otter_session_create_from_file(g_model_path, o, &skip)));
  otter_options_free(o);
  in[0] = view(x_nan, OTTER_DTYPE_FLOAT32, 2, g_x_shape);
  CHECK_OK(otter_session_train_step(skip, 2, g_names_xy, in, &loss));
  expect_stat(skip, "skipped_steps", 1, __LINE__);
  expect_stat(skip, "step", 0, __LINE__);
  CHECK(otter_session_get_stat(skip, "step", &v) == OTTER_OK && v == 0);

  /* The caller's metadata travels in checkpoints. */
  CHECK_ERR(otter_session_get_metadata(s, "epoch", &value), OTTER_ERROR_NOT_FOUND, "epoch");
  CHECK_ERR(otter_session_set_metadata(s, "", "1"), OTTER_ERROR_INVALID_ARGUMENT, "empty");
  CHECK_ERR(otter_session_set_metadata(s, "k", "a\"b"), OTTER_ERROR_INVALID_ARGUMENT, "quotes");
  CHECK_OK(otter_session_set_metadata(s, "epoch", "7"));
  CHECK_OK(otter_session_save_checkpoint(s, ckpt));
  CHECK_OK(otter_session_load_checkpoint(skip, ckpt));
  CHECK(otter_session_get_metadata(skip, "epoch", &value) == OTTER_OK && value && strcmp(value, "7") == 0);

  /* An output never replaces an input. */
  CHECK_ERR(otter_checkpoint_export(ckpt, g_model_path, ckpt), OTTER_ERROR_INVALID_ARGUMENT, "checkpoint itself");
  CHECK_ERR(otter_checkpoint_export(ckpt, g_model_path, g_model_path), OTTER_ERROR_INVALID_ARGUMENT, "input model");
  CHECK_OK(otter_session_load_checkpoint(skip, ckpt)); /* still intact */
  CHECK(strcmp(otter_status_name(OTTER_ERROR_BUSY), "OTTER_ERROR_BUSY") == 0);
  CHECK(strcmp(otter_status_name(OTTER_ERROR_NON_FINITE), "OTTER_ERROR_NON_FINITE") == 0);
  CHECK(strcmp(otter_status_name(OTTER_ERROR_DISTRIBUTED), "OTTER_ERROR_DISTRIBUTED") == 0);
  {
    /* Data parallelism: alone (not started by mpirun) the session is rank 0 of a world of 1. */
    double rank = -1, world = -1;
    CHECK_OK(otter_session_get_stat(skip, "rank", &rank));
    CHECK_OK(otter_session_get_stat(skip, "world_size", &world));
    CHECK(rank == 0 && world == 1);
    otter_options* o = NULL;
    CHECK_OK(otter_options_create(&o));
    CHECK_ERR(otter_options_set(o, "distributed", "nccl"), OTTER_ERROR_INVALID_ARGUMENT, "not one of auto, mpi, off");
    CHECK_ERR(otter_options_set(o, "dist_timeout", "0"), OTTER_ERROR_INVALID_ARGUMENT, "must be > 0");
    CHECK_OK(otter_options_set(o, "distributed", "off"));
    CHECK_OK(otter_options_set(o, "dist_timeout", "30"));
    otter_options_free(o);
  }

  params_free(&before);
  otter_session_free(skip);
  otter_session_free(s);
}

int main(int argc, char** argv) {
  static char model_path[4096];
  const char* tmp = getenv("TMPDIR");
  otter_session* s;

  if (argc != 2) {
    fprintf(stderr, "usage: %s DIGITS_TESTDATA_DIR\n", argv[0]);
    return 2;
  }
  snprintf(model_path, sizeof model_path, "%s/mlp.onnx", argv[1]);
  g_model_path = model_path;
  g_data_dir = argv[1];
  if (!file_exists(model_path)) {
    fprintf(stderr, "%s: no such file\n", model_path);
    return 2;
  }
  snprintf(g_tmpdir, sizeof g_tmpdir, "%s/otter_capi_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
  if (!mkdtemp(g_tmpdir)) {
    perror("mkdtemp");
    return 2;
  }
  make_batch();

  test_library();
  test_options();
  test_create();
  s = new_session();
  test_describe(s);
  test_train_errors(s);
  test_train(s);
  test_eval(s);
  test_parameters(s);
  test_checkpoint(s);
  test_export(s);
  test_npz(s);
  otter_session_free(s);
  test_reliability();

  finish();
  return 0;
}
