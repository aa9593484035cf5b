/* The C interface between the Go package and stubs.c.
 *
 * stubs.c is compiled with the OCaml library (by dune), Go's side by cgo;
 * both include this file. Go never links against the OCaml runtime: it calls
 * OCaml only through the function table that stubs.c hands to lwt_go_init,
 * so that a plain `go build` / `go test` of the package needs no OCaml.
 *
 * Thread rule: every function below, in both directions, runs on the Lwt
 * thread only (the thread that called Lwt_interop.init).
 */
#ifndef LWT_INTEROP_H
#define LWT_INTEROP_H

#include <stddef.h>
#include <stdint.h>

/* An OCaml value as Go sees it. Go never keeps one across a call into
 * OCaml (the GC may move it); values Go keeps are roots. */
typedef intptr_t lwt_value;

/* A generational global root owned by stubs.c: Go keeps the pointer. */
typedef lwt_value *lwt_root;

/* What an OCaml function that Go called settled with at once. */
struct lwt_call_out {
  lwt_value result; /* LWT_RESOLVED */
  /* LWT_REJECTED: the exception, malloc'd (or NULL), which the caller frees:
   * lwt_interop.ml's ocaml_error record as a flat buffer (errors.go), or,
   * with error_is_text set, only Printexc's text of an exception raised by
   * lwt_interop.ml itself (Out_of_memory, Stack_overflow). */
  unsigned char *error;
  size_t error_len;
  int error_is_text;
};

/* An error Go reports to stubs.c: a malloc'd flat buffer (errors.go's
 * goErrorWire), which stubs.c turns into an OCaml exception and frees. */
struct lwt_error {
  unsigned char *buf;
  size_t len;
};

/* A function OCaml registered by name, as find reports it. */
struct lwt_named {
  lwt_value fn;
  const char *arg_sig, *ret_sig;
  size_t arg_len, ret_len;
  int sync;
};

struct lwt_ocaml {
  lwt_root (*root_new)(lwt_value v);
  void (*root_free)(lwt_root r);
  lwt_value (*root_get)(lwt_root r);
  /* Puts head in front of the list that root holds (a function's
   * arguments, lwt_interop.ml's bind_fn and register_fn). */
  void (*cons)(lwt_root list, lwt_value head);

  /* Calls the closure in fn with arg. When the 'b Lwt.t it returns is
   * already settled, call returns LWT_RESOLVED with the value in out, or
   * LWT_REJECTED with the exception in out. Otherwise it returns
   * LWT_PENDING, and the promise settles Go's call id later through
   * lwt_go_resolve / lwt_go_reject; with cancellable set, cancel(id) may
   * Lwt.cancel it meanwhile, after which the id is Go's to reuse. */
  int (*call)(lwt_root fn, lwt_value arg, intptr_t id, int cancellable, struct lwt_call_out *out);
  void (*cancel)(intptr_t id);

  /* The function OCaml registered as name (Lwt_interop.register): returns 1
   * and fills out, or 0. out's strings and function are OCaml's: valid
   * until the next OCaml allocation. */
  int (*find)(const char *name, size_t len, struct lwt_named *out);

  /* The bridge was shut down (from OCaml or from Go): OCaml stops watching
   * the fd and forgets the calls in flight. */
  void (*closed)(void);
  /* Sleeps ns nanoseconds without holding OCaml's runtime (shutdown's
   * grace period), so that other threads and domains run OCaml meanwhile;
   * Go holds OCaml values only through roots across it. */
  void (*sleep)(int64_t ns);

  /* Settle the OCaml promise of an OCaml→Go call, whose resolver stubs.c
   * keeps under the number lwt_go_call got. Once per call. */
  void (*wakeup)(intptr_t resolver, lwt_value v);
  /* The error is a flat buffer, as struct lwt_error's, in two parts: the
   * buffer but the bytes of its last field (the message), then those. */
  void (*wakeup_exn)(intptr_t resolver, const unsigned char *head, size_t head_len, const char *msg,
                     size_t msg_len);

  /* Value conversion. The allocating ones return a value that must be used
   * before the next OCaml allocation; copy_string returns 0 when OCaml
   * cannot allocate the string. */
  lwt_value (*copy_string)(const char *p, size_t len);
  const char *(*string_data)(lwt_value v, size_t *len);
  lwt_value (*copy_double)(double d);
  double (*double_val)(lwt_value v);

  /* A Go value held by OCaml: a runtime/cgo.Handle in a custom block whose
   * finalizer calls lwt_go_free_handle; mem is the Go value's estimated
   * size, which speeds up OCaml's GC. handle_id returns 0 for a value that
   * is not such a block. */
  lwt_value (*new_handle)(uintptr_t h, size_t mem);
  uintptr_t (*handle_id)(lwt_value v);

  /* The bytes of a value that OCaml wrote as a flat buffer (flat.go):
   * valid until the next OCaml allocation. */
  const unsigned char *(*flat_data)(lwt_value v, size_t *len);
};

/* A call that a task left to stubs.c (func.go's mayDefer): made with
 * api->call as soon as the lwt_go_resolve or lwt_go_reject that resumed the
 * task returns, for nothing else enters OCaml meanwhile; Go already holds
 * id as a pending call. An outcome known at once reaches Go as if OCaml's
 * promise had settled later: lwt_go_resolve, or lwt_go_fail; missed is
 * then set, so that Go makes its next call itself. running is set while
 * OCaml runs such a call: Go treats an entry from it as nested in a call
 * of its own. Go defines it; Lwt thread only. */
struct lwt_deferred_call {
  lwt_root fn;
  lwt_value arg;
  intptr_t id;
  int cancellable;
  int set;
  int missed;
  int running;
};
extern struct lwt_deferred_call lwt_deferred_call;

/* Exported by Go (export.go); stubs.c calls them on the Lwt thread but
 * where said. err->buf (or *err, a message for Invalid_argument), when set,
 * is malloc'd; the caller frees it. */
/* error_codes: lwt_interop.ml's error records, which Go checks. */
extern int lwt_go_init(struct lwt_ocaml *api, char *error_codes, size_t codes_len, struct lwt_error *err);
extern int lwt_go_shutdown(int64_t grace_ns, struct lwt_error *err);
/* Returns non-zero when called inside OCaml code that Go called, where
 * Go's jobs cannot run. */
extern int lwt_go_run_pending(void);
extern int lwt_go_lookup(char *name, size_t name_len, char *arg_sig, size_t arg_len,
                         char *ret_sig, size_t ret_len, int *kind, char **err);
/* Calls the Go function that lwt_go_lookup numbered fn or, when callback is
 * not 0, the Callback whose handle it is. */
extern int64_t lwt_go_call(int fn, uintptr_t callback, lwt_value arg, intptr_t resolver,
                           struct lwt_error *err);
extern int lwt_go_call_sync(int fn, uintptr_t callback, lwt_value arg, lwt_value *result,
                            struct lwt_error *err);
/* on_lwt_thread is zero when called from another thread: Go then posts the
 * cancel to the Lwt thread. */
extern void lwt_go_cancel(int64_t call, int on_lwt_thread);
extern void lwt_go_resolve(intptr_t id, lwt_value v);
/* err: lwt_interop.ml's ocaml_error record, as a flat buffer. */
extern void lwt_go_reject(intptr_t id, unsigned char *err, size_t len);
/* A deferred call that OCaml rejected at once; Go frees out->error. */
extern void lwt_go_fail(intptr_t id, struct lwt_call_out *out);
/* Any thread: Go call id was settled on a thread that is not the Lwt thread. */
extern void lwt_go_settled_off_thread(intptr_t id);
extern void lwt_go_stats(int64_t *out, int n);
/* May run inside OCaml's GC, on any thread: it calls nothing in OCaml. */
extern void lwt_go_free_handle(uintptr_t h);

/* What api->call reports. */
enum { LWT_PENDING = 0, LWT_RESOLVED = 1, LWT_REJECTED = 2 };

/* The kinds of Go function, as lwt_go_lookup reports them. */
enum { LWT_GOROUTINE = 0, LWT_TASK = 1, LWT_SYNC = 2 };

#endif
