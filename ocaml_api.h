/* How the Go package calls OCaml, for the cgo preambles of its files: one
 * wrapper per entry of the function table that stubs.c hands to
 * lwt_go_init (lwt_interop.h). Lwt thread only.
 *
 * What C returns through a pointer lands in a global that Go reads
 * directly, so that no Go pointer escapes to the heap. func.go defines the
 * globals. */
#ifndef LWT_OCAML_API_H
#define LWT_OCAML_API_H

#include <stdio.h>
#include <stdlib.h>
#include "lwt_interop.h"

extern struct lwt_ocaml *lwt_api;
extern struct lwt_call_out lwt_call_out; /* what api->call settled with at once */
extern int lwt_call_status;              /* what api->call returned */
extern size_t lwt_out_len;

/* Every wrapper below that may run OCaml code, allocate in OCaml's heap or
 * free a root first checks that no call waits in lwt_deferred_call: its
 * argument is unrooted and its function's root in use until stubs.c makes
 * it, once Go returns (func.go's mayDefer keeps Go from entering OCaml
 * meanwhile). Were that ever broken, the process stops here, saying so,
 * rather than calls reaching OCaml out of order, or a moved argument. */
static inline void lwt_enter(void)
{
  if (lwt_deferred_call.set) {
    fputs("lwt: internal error: Go entered OCaml while a deferred call waited\n", stderr);
    abort();
  }
}

static inline lwt_root lwt_root_new(lwt_value v) { return lwt_api->root_new(v); }
static inline void lwt_root_free(lwt_root r) { lwt_enter(); lwt_api->root_free(r); }
static inline lwt_value lwt_root_get(lwt_root r) { return lwt_api->root_get(r); }
static inline void lwt_cons(lwt_root list, lwt_value head) { lwt_enter(); lwt_api->cons(list, head); }
static inline lwt_value lwt_field(lwt_value v, int i) { return ((lwt_value *)v)[i]; }
static inline lwt_value lwt_new_handle(uintptr_t h, size_t mem) { lwt_enter(); return lwt_api->new_handle(h, mem); }
static inline uintptr_t lwt_handle_id(lwt_value v) { return lwt_api->handle_id(v); }

/* Its status goes to lwt_call_status: for a C function that returns a
 * value, cgo's wrapper asks twice where Go's stack is (the call may enter Go,
 * which may move it). */
static inline void lwt_call(lwt_root fn, lwt_value arg, intptr_t id, int cancellable)
{
  lwt_enter();
  lwt_call_status = lwt_api->call(fn, arg, id, cancellable, &lwt_call_out);
}
static inline void lwt_cancel(intptr_t id) { lwt_enter(); lwt_api->cancel(id); }
/* Returns 0, without sleeping, for a simulated bridge (Simulate: no OCaml). */
static inline int lwt_sleep(int64_t ns)
{
  if (lwt_api == NULL)
    return 0;
  lwt_enter();
  lwt_api->sleep(ns);
  return 1;
}
static inline int lwt_find(_GoString_ name, struct lwt_named *out)
{
  if (lwt_api == NULL) /* a simulated bridge (Simulate): no OCaml */
    return 0;
  lwt_enter();
  return lwt_api->find(_GoStringPtr(name), _GoStringLen(name), out);
}
static inline void lwt_wakeup(intptr_t resolver, lwt_value v) { lwt_enter(); lwt_api->wakeup(resolver, v); }
static inline void lwt_wakeup_exn(intptr_t resolver, const void *head, size_t len, _GoString_ msg)
{
  lwt_enter();
  lwt_api->wakeup_exn(resolver, head, len, _GoStringPtr(msg), _GoStringLen(msg));
}

static inline lwt_value lwt_copy_string(_GoString_ s)
{
  lwt_enter();
  return lwt_api->copy_string(_GoStringPtr(s), _GoStringLen(s));
}
static inline lwt_value lwt_copy_bytes(const void *p, size_t n) { lwt_enter(); return lwt_api->copy_string(p, n); }
static inline const char *lwt_string_data(lwt_value v) { return lwt_api->string_data(v, &lwt_out_len); }
static inline lwt_value lwt_copy_double(double d) { lwt_enter(); return lwt_api->copy_double(d); }
static inline double lwt_double_val(lwt_value v) { return lwt_api->double_val(v); }
static inline const unsigned char *lwt_flat_data(lwt_value v) { return lwt_api->flat_data(v, &lwt_out_len); }

#endif
