/* Trains the bundled digits model through Otter's C ABI and exports it.
 * Build (from the repository root, after scripts/test or scripts/demo built libotter):
 *   cc -std=c99 -I capi/include examples/c/train_digits.c -L build -lotter -Wl,-rpath,build -o train_digits
 *   ./train_digits examples/digits trained.onnx
 */
#include <otter/otter.h>
#include <stdio.h>

#define TRY(call)                                                             \
  do {                                                                        \
    if ((call) != OTTER_OK) {                                                 \
      fprintf(stderr, "%s failed: %s\n", #call, otter_last_error());          \
      return 1;                                                               \
    }                                                                         \
  } while (0)

int main(int argc, char** argv) {
  char model[4096], data[4096];
  otter_options* opts = NULL;
  otter_session* session = NULL;
  otter_tensor_list* train = NULL;
  otter_tensor_view x, y, batch[2];
  const char* names[2] = {"x", "label"};
  const char* name = NULL;
  int64_t xshape[2], yshape[1];
  size_t i, step, count = 0;
  double loss = 0;
  if (argc != 3) {
    fprintf(stderr, "usage: %s EXAMPLE_DIR OUT.onnx\n", argv[0]);
    return 2;
  }
  snprintf(model, sizeof model, "%s/mlp.onnx", argv[1]);
  snprintf(data, sizeof data, "%s/train.npz", argv[1]);

  TRY(otter_options_create(&opts));
  TRY(otter_options_set(opts, "loss", "cross_entropy"));
  TRY(otter_options_set(opts, "optimizer", "adamw"));
  TRY(otter_options_set_double(opts, "lr", 3e-3));
  TRY(otter_options_set(opts, "precision", "fp16"));
  TRY(otter_session_create_from_file(model, opts, &session));
  otter_options_free(opts);

  TRY(otter_npz_load(data, &train)); /* arrays "x" [1500, 64] float32 and "y" [1500] int64 */
  TRY(otter_tensor_list_size(train, &count));
  for (i = 0; i < count; ++i) {
    otter_tensor_view v;
    TRY(otter_tensor_list_get(train, i, &name, &v));
    if (name[0] == 'x') x = v; else y = v;
  }
  for (step = 0; step < 10 * 46; ++step) { /* 10 epochs of 46 batches of 32 rows */
    size_t row = (step % 46) * 32;
    xshape[0] = 32; xshape[1] = 64; yshape[0] = 32;
    batch[0] = x;
    batch[0].data = (float*)x.data + row * 64;
    batch[0].shape = xshape;
    batch[1] = y;
    batch[1].data = (int64_t*)y.data + row;
    batch[1].shape = yshape;
    TRY(otter_session_train_step(session, 2, names, batch, &loss)); /* no copy of the inputs */
    if (step % 92 == 91) printf("step %zu  loss %.4f\n", step + 1, loss);
  }
  TRY(otter_session_export(session, argv[2]));
  printf("exported %s\n", argv[2]);
  otter_tensor_list_free(train);
  otter_session_free(session);
  return 0;
}
