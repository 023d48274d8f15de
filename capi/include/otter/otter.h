/* Otter's only public header: a plain-C ABI over the training runtime.
 * For now it exposes only the version; the session, tensor and option API comes next. */
#ifndef OTTER_OTTER_H
#define OTTER_OTTER_H

#if defined(_WIN32)
#define OTTER_API __declspec(dllexport)
#else
#define OTTER_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The library version, "MAJOR.MINOR.PATCH". */
OTTER_API const char* otter_version(void);

#ifdef __cplusplus
}
#endif
#endif
