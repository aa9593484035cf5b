//go:build ignore
/* The build constraint above keeps cgo from compiling this file: it is the
 * OCaml side's C, built by dune with the lwt_interop library. */

/* stubs.c: the C half of the bridge between OCaml/Lwt and Go.
 *
 * - The OCaml externals of lwt_interop.ml, each a thin call into a Go export
 *   (lwt_interop.h) that turns a Go error into an OCaml exception.
 * - The function table Go calls OCaml through (struct lwt_ocaml).
 * - The signal fix (the last section), installed at link time by
 *   -Wl,--wrap=sigaction (the library's link flags carry it).
 *
 * Thread rule: everything but the signal code runs on the Lwt thread, the
 * thread that called Lwt_interop.init; externals check it. */

#define _GNU_SOURCE
#define CAML_NAME_SPACE
#include <caml/alloc.h>
#include <caml/callback.h>
#include <caml/custom.h>
#include <caml/fail.h>
#include <caml/memory.h>
#include <caml/mlvalues.h>
#include <caml/printexc.h>
#include <caml/signals.h>
#include <caml/version.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include "lwt_interop.h"

/* The Lwt thread is the one that first called init, for good. It is known
 * by a thread-local flag, not its pthread_t: the C library hands an ended
 * thread's pthread_t to a new thread, which must not pass for it. */
static __thread int is_lwt_thread;
static int started;

/* Set in a child process made by fork: Go's runtime, which the c-archive's
 * constructor started, does not survive fork (its threads are gone), so the
 * child must not call Go, init or not. Watched from a constructor. */
static volatile int forked;
static void on_fork_child(void) { forked = 1; }
__attribute__((constructor)) static void lwt_watch_fork(void) { pthread_atfork(NULL, NULL, on_fork_child); }

/* OCaml functions registered by lwt_interop.ml (Callback.register). */
static const value *call_closure, *cancel_closure, *closed_closure, *wakeup_closure,
    *wakeup_exn_closure, *create_bytes_closure, *find_closure, *go_exn_closure, *raised_exn;

static const value *named(const char *name)
{
  const value *v = caml_named_value(name);
  if (v == NULL) {
    fprintf(stderr, "lwt_interop: %s is not registered (is lwt_interop.ml linked?)\n", name);
    abort();
  }
  return v;
}

/* ---- Errors -------------------------------------------------------------- */

static value copy_bytes(const char *p, size_t len);

/* Raises the exception of the error Go reported (Go_error, Closed, ...:
 * lwt_interop.ml's go_exn reads it); frees its buffer. */
static void raise_go_error(struct lwt_error *err)
{
  CAMLparam0();
  CAMLlocal2(s, exn);
  s = copy_bytes((const char *)err->buf, err->len);
  free(err->buf);
  err->buf = NULL;
  if (s == 0)
    caml_raise_out_of_memory();
  exn = caml_callback_exn(*go_exn_closure, s);
  caml_raise(Is_exception_result(exn) ? Extract_exception(exn) : exn);
  CAMLnoreturn;
}

static int on_lwt_thread(void) { return started && is_lwt_thread; }

static void check_thread(const char *what)
{
  if (forked)
    caml_failwith("Lwt_interop: unusable in a child process made by fork (Go's runtime does not "
                  "survive fork): use the bridge in the parent, or exec");
  if (!started)
    caml_failwith("Lwt_interop: not initialised (call Lwt_interop.init first)");
  if (!is_lwt_thread) {
    char msg[160];
    snprintf(msg, sizeof msg, "Lwt_interop.%s: called from a thread that is not the Lwt thread", what);
    caml_failwith(msg);
  }
}

/* ---- The function table Go calls OCaml through ----------------------------
 *
 * No OCaml exception may unwind through Go's frames. These functions run
 * OCaml code only through caml_callback*_exn, and an allocation that can
 * raise (Out_of_memory, when the major heap cannot grow) goes through
 * alloc_bytes: what fails comes back to Go as 0 or NULL. Allocations in the
 * minor heap cannot raise (OCaml's own minor GC treats a failure to grow
 * the major heap as fatal), nor can a malloc of a few bytes in practice. */

/* A string of len bytes, uninitialised, or 0 if OCaml cannot allocate it. */
static value alloc_bytes(size_t len)
{
  if (len < Max_young_wosize * sizeof(value))
    return caml_alloc_string(len);
  value res = caml_callback_exn(*create_bytes_closure, Val_long(len));
  return Is_exception_result(res) ? 0 : res;
}

static value copy_bytes(const char *p, size_t len)
{
  value v = alloc_bytes(len);
  if (v != 0)
    memcpy(Bytes_val(v), p, len);
  return v;
}

static lwt_root api_root_new(lwt_value v)
{
  value *r = caml_stat_alloc_noexc(sizeof *r);
  if (r == NULL)
    return NULL;
  *r = v;
  caml_register_generational_global_root(r);
  return (lwt_root)r;
}

static void api_root_free(lwt_root r)
{
  caml_remove_generational_global_root((value *)r);
  caml_stat_free(r);
}

static lwt_value api_root_get(lwt_root r) { return *(lwt_value *)r; }

static void api_cons(lwt_root list, lwt_value head)
{
  CAMLparam0();
  CAMLlocal2(x, cell);
  x = (value)head;
  cell = caml_alloc_small(2, Tag_cons);
  Field(cell, 0) = x;
  Field(cell, 1) = *(value *)list;
  caml_modify_generational_global_root((value *)list, cell);
  CAMLreturn0;
}

/* Go values held by OCaml (Lwt_interop.handle). Two handles are equal when
 * they are the same handle. */

static uintptr_t *handle_data(value v) { return (uintptr_t *)Data_custom_val(v); }

/* Not in a child after fork: its Go runtime is gone (the handle leaks). */
static void handle_finalize(value v)
{
  if (!forked)
    lwt_go_free_handle(*handle_data(v));
}

static int handle_compare(value a, value b)
{
  uintptr_t x = *handle_data(a), y = *handle_data(b);
  return (x > y) - (x < y);
}

static intnat handle_hash(value v) { return (intnat)*handle_data(v); }

static struct custom_operations handle_ops = {
  "lwt_interop.go_handle", handle_finalize, handle_compare, handle_hash,
  custom_serialize_default, custom_deserialize_default, custom_compare_ext_default,
  custom_fixed_length_default,
};

/* mem is the Go value's size, as Go estimates it: OCaml's GC speeds up with
 * the Go memory its handles keep alive, as it does for bigarrays. */
static lwt_value api_new_handle(uintptr_t h, size_t mem)
{
  value v = caml_alloc_custom_mem(&handle_ops, sizeof h, mem);
  *handle_data(v) = h;
  return (lwt_value)v;
}

static uintptr_t api_handle_id(lwt_value v)
{
  value x = (value)v;
  if (Is_block(x) && Tag_val(x) == Custom_tag && Custom_ops_val(x) == &handle_ops)
    return *handle_data(x);
  return 0;
}

static void report_exn(const char *where, value res)
{
  char *msg = caml_format_exception(Extract_exception(res));
  fprintf(stderr, "lwt_interop: exception in %s: %s\n", where, msg);
  caml_stat_free(msg);
}

static const unsigned char *api_flat_data(lwt_value v, size_t *len);

static int api_call(lwt_root fn, lwt_value arg, intptr_t id, int cancellable,
                    struct lwt_call_out *out)
{
  /* Three arguments, so that OCaml is entered once (caml_callbackN with
   * four enters it twice, through a partial application). */
  value res = caml_callback3_exn(*call_closure, *(value *)fn, (value)arg,
                                 Val_long(cancellable ? id : ~id));
  if (Is_exception_result(res)) {
    value exn = Extract_exception(res);
    out->error_is_text = 0;
    if (Tag_val(exn) == 0 && Field(exn, 0) == *raised_exn) {
      size_t len;
      const unsigned char *p = api_flat_data((lwt_value)Field(exn, 1), &len);
      out->error = malloc(len ? len : 1);
      out->error_len = len;
      if (out->error != NULL)
        memcpy(out->error, p, len);
    } else { /* raised by lwt_interop.ml itself: Out_of_memory, Stack_overflow */
      char *msg = caml_format_exception(exn);
      out->error_len = strlen(msg);
      out->error = (unsigned char *)strdup(msg);
      out->error_is_text = 1;
      caml_stat_free(msg);
    }
    return LWT_REJECTED;
  }
  if (Is_long(res)) /* None */
    return LWT_PENDING;
  out->result = (lwt_value)Field(res, 0);
  return LWT_RESOLVED;
}

static void api_cancel(intptr_t id)
{
  value res = caml_callback_exn(*cancel_closure, Val_long(id));
  if (Is_exception_result(res))
    report_exn("Lwt.cancel", res);
}

/* The function OCaml registered as name (lwt_interop.ml's Registered block:
 * argument and result types, the function, whether it is plain), or 0. */
static int api_find(const char *name, size_t len, struct lwt_named *out)
{
  CAMLparam0();
  CAMLlocal2(s, res);
  s = copy_bytes(name, len);
  if (s == 0)
    CAMLreturnT(int, 0);
  res = caml_callback_exn(*find_closure, s);
  if (Is_exception_result(res) || Is_long(res)) /* None */
    CAMLreturnT(int, 0);
  value r = Field(res, 0);
  out->arg_sig = String_val(Field(r, 0));
  out->arg_len = caml_string_length(Field(r, 0));
  out->ret_sig = String_val(Field(r, 1));
  out->ret_len = caml_string_length(Field(r, 1));
  out->fn = (lwt_value)Field(r, 2);
  out->sync = Bool_val(Field(r, 3));
  CAMLreturnT(int, 1);
}

static void api_closed(void)
{
  value res = caml_callback_exn(*closed_closure, Val_unit);
  if (Is_exception_result(res))
    report_exn("Lwt_interop.shutdown", res);
}

/* Not caml_enter_blocking_section, which runs OCaml's pending signal
 * handlers first: one that raises would unwind through Go's frames. */
static void api_sleep(int64_t ns)
{
  struct timespec ts = {ns / 1000000000, ns % 1000000000};
  caml_enter_blocking_section_no_pending();
  nanosleep(&ts, NULL);
  caml_leave_blocking_section();
}

/* ---- Resolvers of OCaml's calls into Go ------------------------------------
 *
 * The Lwt resolver of each OCaml→Go call in flight sits in a slot of one
 * OCaml array, which is a single generational global root: a root per call
 * costs a skiplist insert and remove, 13% of the Lwt thread with 1,000
 * calls in flight. Go names a call's resolver by its slot. */

static value resolvers = Val_unit; /* an OCaml array, rooted at its first growth */
static intptr_t *free_slots;
static size_t n_free, n_slots;

static void grow_resolvers(void)
{
  CAMLparam0();
  CAMLlocal1(bigger);
  size_t n = n_slots ? 2 * n_slots : 64;
  intptr_t *slots = realloc(free_slots, n * sizeof *slots);
  if (slots == NULL)
    caml_raise_out_of_memory();
  free_slots = slots;
  bigger = caml_alloc(n, 0); /* every field Val_unit */
  for (size_t i = 0; i < n_slots; i++)
    Store_field(bigger, i, Field(resolvers, i));
  if (n_slots == 0)
    caml_register_generational_global_root(&resolvers);
  caml_modify_generational_global_root(&resolvers, bigger);
  for (size_t i = n; i > n_slots; i--)
    free_slots[n_free++] = i - 1;
  n_slots = n;
  CAMLreturn0;
}

static intptr_t put_resolver(value u)
{
  CAMLparam1(u);
  if (n_free == 0)
    grow_resolvers();
  intptr_t slot = free_slots[--n_free];
  Store_field(resolvers, slot, u);
  CAMLreturnT(intptr_t, slot);
}

static value take_resolver(intptr_t slot)
{
  value u = Field(resolvers, slot);
  Store_field(resolvers, slot, Val_unit);
  free_slots[n_free++] = slot;
  return u;
}

static void api_wakeup(intptr_t resolver, lwt_value v)
{
  value res = caml_callback2_exn(*wakeup_closure, take_resolver(resolver), (value)v);
  if (Is_exception_result(res))
    report_exn("Lwt.wakeup_later", res);
}

static void api_wakeup_exn(intptr_t resolver, const unsigned char *head, size_t head_len,
                           const char *msg, size_t msg_len)
{
  CAMLparam0();
  CAMLlocal3(u, s, res);
  u = take_resolver(resolver);
  s = alloc_bytes(head_len + msg_len);
  if (s == 0) { /* the error, too large for the heap: OCaml's go_exn says so */
    s = caml_alloc_string(0);
  } else {
    memcpy(Bytes_val(s), head, head_len);
    memcpy(Bytes_val(s) + head_len, msg, msg_len);
  }
  res = caml_callback2_exn(*wakeup_exn_closure, u, s);
  if (Is_exception_result(res))
    report_exn("Lwt.wakeup_later_exn", res);
  CAMLreturn0;
}

static lwt_value api_copy_string(const char *p, size_t len) { return (lwt_value)copy_bytes(p, len); }

static const char *api_string_data(lwt_value v, size_t *len)
{
  *len = caml_string_length((value)v);
  return String_val((value)v);
}

static lwt_value api_copy_double(double d) { return (lwt_value)caml_copy_double(d); }
static double api_double_val(lwt_value v) { return Double_val((value)v); }

/* The bytes a ty.ml writer (of a value crossing as a flat buffer) holds:
 * the first pos bytes of its buffer. */
static const unsigned char *api_flat_data(lwt_value v, size_t *len)
{
  *len = Long_val(Field((value)v, 1));
  return Bytes_val(Field((value)v, 0));
}

static struct lwt_ocaml api = {
  .root_new = api_root_new,
  .root_free = api_root_free,
  .root_get = api_root_get,
  .cons = api_cons,
  .call = api_call,
  .cancel = api_cancel,
  .closed = api_closed,
  .sleep = api_sleep,
  .find = api_find,
  .wakeup = api_wakeup,
  .wakeup_exn = api_wakeup_exn,
  .copy_string = api_copy_string,
  .string_data = api_string_data,
  .copy_double = api_copy_double,
  .double_val = api_double_val,
  .new_handle = api_new_handle,
  .handle_id = api_handle_id,
  .flat_data = api_flat_data,
};

/* ---- OCaml externals ------------------------------------------------------ */

/* Go runs its signal handler on the thread's alternate signal stack when the
 * thread has one (OCaml's, on the Lwt thread), and a few KiB, what OCaml 5
 * gives, is too little for Go's handler built with -race ("morestack on
 * gsignal"): the Lwt thread gets at least 64 KiB. Kept for the process's
 * life, as OCaml keeps its own. */
#define LWT_SIGNAL_STACK (64 * 1024)

static void ensure_signal_stack(void)
{
  static void *mine;
  stack_t ss;
  if (sigaltstack(NULL, &ss) == 0 && !(ss.ss_flags & SS_DISABLE) && ss.ss_size >= LWT_SIGNAL_STACK)
    return;
  if (ss.ss_flags & SS_ONSTACK) /* never from a signal handler */
    return;
  if (mine == NULL && (mine = malloc(LWT_SIGNAL_STACK)) == NULL)
    return;
  ss.ss_sp = mine;
  ss.ss_size = LWT_SIGNAL_STACK;
  ss.ss_flags = 0;
  sigaltstack(&ss, NULL);
}

value lwt_interop_init(value unit)
{
  struct lwt_error err = {NULL, 0};
  (void)unit;
  if (forked)
    check_thread("init");
  if (started && !is_lwt_thread)
    caml_failwith("Lwt_interop.init: already initialised on another thread (the bridge stays on the "
                  "thread that first called init, even once it ended)");
  call_closure = named("lwt_interop.call");
  cancel_closure = named("lwt_interop.cancel");
  closed_closure = named("lwt_interop.closed");
  wakeup_closure = named("lwt_interop.wakeup");
  wakeup_exn_closure = named("lwt_interop.wakeup_exn");
  create_bytes_closure = named("lwt_interop.create_bytes");
  find_closure = named("lwt_interop.find");
  go_exn_closure = named("lwt_interop.go_exn");
  raised_exn = named("lwt_interop.Raised");
  value codes = *named("lwt_interop.error_codes");
  ensure_signal_stack();
  int fd = lwt_go_init(&api, (char *)String_val(codes), caml_string_length(codes), &err);
  if (fd < 0)
    raise_go_error(&err);
  is_lwt_thread = 1;
  started = 1;
  return Val_int(fd);
}

value lwt_interop_shutdown(value grace)
{
  struct lwt_error err = {NULL, 0};
  check_thread("shutdown");
  double secs = Double_val(grace);
  if (!(secs > 0)) /* NaN and negatives too */
    secs = 0;
  if (secs > 1e9) /* infinity */
    secs = 1e9;
  if (lwt_go_shutdown((int64_t)(secs * 1e9), &err) != 0)
    raise_go_error(&err);
  return Val_unit;
}

/* The notifier's fd is readable. Returns false in a child process after
 * fork, whose OCaml side then stops watching the fd (the parent's). */
value lwt_interop_run_pending(value unit)
{
  (void)unit;
  if (forked)
    return Val_false;
  if (!on_lwt_thread())
    caml_failwith("Lwt_interop: Lwt_main.run runs on a thread that is not the Lwt thread (the "
                  "one that called Lwt_interop.init); Go's jobs run only there");
  if (lwt_go_run_pending() != 0)
    caml_failwith("Lwt_interop: Lwt_main.run inside OCaml code called by Go cannot run Go's "
                  "work (Go waits for that code to return); return a promise instead");
  return Val_true;
}

value lwt_interop_lookup(value name, value arg_sig, value ret_sig)
{
  CAMLparam3(name, arg_sig, ret_sig);
  CAMLlocal2(msg, pair);
  char *err = NULL;
  int kind = 0;
  check_thread("bind");
  int id = lwt_go_lookup((char *)String_val(name), caml_string_length(name),
                         (char *)String_val(arg_sig), caml_string_length(arg_sig),
                         (char *)String_val(ret_sig), caml_string_length(ret_sig), &kind, &err);
  if (id < 0) {
    msg = caml_copy_string(err);
    free(err);
    caml_invalid_argument_value(msg);
  }
  pair = caml_alloc_small(2, 0);
  Field(pair, 0) = Val_int(id);
  Field(pair, 1) = Val_int(kind);
  CAMLreturn(pair);
}

/* fn: the number lookup gave, or a Go Callback's handle. */
static uintptr_t callback_of(value fn) { return Is_long(fn) ? 0 : *handle_data(fn); }

value lwt_interop_call(value fn, value arg, value resolver)
{
  CAMLparam3(fn, arg, resolver);
  struct lwt_error err = {NULL, 0};
  check_thread("call");
  intptr_t slot = put_resolver(resolver);
  int64_t id = lwt_go_call(Is_long(fn) ? Int_val(fn) : -1, callback_of(fn), (lwt_value)arg, slot, &err);
  if (id < 0) {
    take_resolver(slot);
    raise_go_error(&err);
  }
  CAMLreturn(Val_long(id));
}

value lwt_interop_call_sync(value fn, value arg)
{
  CAMLparam2(fn, arg);
  /* A root: after the Go function returns, Go may resume loop tasks, whose
   * calls into OCaml can run the GC before this result is returned. */
  CAMLlocal1(result);
  struct lwt_error err = {NULL, 0};
  check_thread("call");
  if (lwt_go_call_sync(Is_long(fn) ? Int_val(fn) : -1, callback_of(fn), (lwt_value)arg, (lwt_value *)&result,
                       &err) != 0)
    raise_go_error(&err);
  CAMLreturn(result);
}

/* Lwt.cancel of a Go call's promise: from any thread, and never raises (it
 * runs as an Lwt.on_cancel callback). Off the Lwt thread, Go posts the
 * cancel to the Lwt thread. */
value lwt_interop_cancel(value call)
{
  if (started && !forked)
    lwt_go_cancel(Long_val(call), on_lwt_thread());
  return Val_unit;
}

/* A promise of an OCaml function that Go called settled: on the Lwt thread,
 * Go's call gets its result. Woken on another thread (Lwt.wakeup from a
 * Thread), the value cannot be handed over, and Go's call fails with an
 * error saying so. These run as Lwt callbacks: they never raise. */
/* Makes the call that the task resumed by the entry that just returned
 * left here (lwt_deferred_call), as Go would have made it: the task's next
 * call costs no crossing from Go into C. An outcome known at once resumes
 * the task, which may leave another call. */
static void make_deferred_calls(void)
{
  while (lwt_deferred_call.set) {
    struct lwt_deferred_call d = lwt_deferred_call;
    struct lwt_call_out out;
    int rc;
    lwt_deferred_call.set = 0;
    lwt_deferred_call.running = 1;
    rc = api_call(d.fn, d.arg, d.id, d.cancellable, &out);
    lwt_deferred_call.running = d.running; /* 1 if nested in another one */
    switch (rc) {
    case LWT_PENDING:
      break;
    case LWT_RESOLVED:
      lwt_deferred_call.missed = 1;
      lwt_go_resolve(d.id, out.result);
      break;
    default:
      lwt_deferred_call.missed = 1;
      lwt_go_fail(d.id, &out);
    }
  }
}

value lwt_interop_resolve(value id, value v)
{
  if (forked || !started)
    return Val_unit;
  if (on_lwt_thread()) {
    lwt_go_resolve(Long_val(id), (lwt_value)v);
    make_deferred_calls();
  } else {
    lwt_go_settled_off_thread(Long_val(id));
  }
  return Val_unit;
}

value lwt_interop_reject(value id, value err)
{
  if (forked || !started)
    return Val_unit;
  if (on_lwt_thread()) {
    size_t len;
    const unsigned char *p = api_flat_data((lwt_value)err, &len);
    lwt_go_reject(Long_val(id), (unsigned char *)p, len);
    make_deferred_calls();
  } else {
    lwt_go_settled_off_thread(Long_val(id));
  }
  return Val_unit;
}

value lwt_interop_forked(value unit)
{
  (void)unit;
  return Val_bool(forked);
}

value lwt_interop_go_stats(value unit)
{
  CAMLparam1(unit);
  CAMLlocal1(arr);
  int64_t out[6] = {0};
  if (!forked)
    lwt_go_stats(out, 6);
  arr = caml_alloc_tuple(6);
  for (int i = 0; i < 6; i++)
    Store_field(arr, i, Val_long(out[i]));
  CAMLreturn(arr);
}

value lwt_interop_on_lwt_thread(value unit)
{
  (void)unit;
  return Val_bool(on_lwt_thread());
}

/* ---- Timer slack ----------------------------------------------------------
 *
 * Go's scheduler sleeps a few microseconds (usleep(3)) on the way of a
 * goroutine that the Lwt thread wakes, and Linux's default timer slack of
 * 50 µs stretches each such sleep to ~60 µs: a goroutine awaiting OCaml lost
 * half its speed to it. A thread inherits the slack of the thread that
 * creates it, and Go's c-archive constructor, which starts Go's threads,
 * runs after this one (priority 101 comes before the default): so every
 * thread of the program gets a 1 ns slack, unless the environment variable
 * LWT_INTEROP_KEEP_TIMER_SLACK is set (to anything but ""). */
__attribute__((constructor(101))) static void lwt_timer_slack(void)
{
  const char *keep = getenv("LWT_INTEROP_KEEP_TIMER_SLACK");
  if (keep == NULL || *keep == 0)
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
}

/* ---- Signals ----------------------------------------------------------------
 *
 * Go's c-archive constructor installs its SIGSEGV handler before main; OCaml
 * then installs its own (to raise Stack_overflow), and a nil dereference in
 * Go would kill the process. And Lwt and Sys.set_signal install handlers
 * without SA_ONSTACK, which then run on whatever stack the thread is on,
 * a small goroutine stack included.
 *
 * And an asynchronous signal that both Go (signal.Notify) and the program
 * (Lwt_unix.on_signal, Sys.set_signal) handle would reach only whichever
 * installed its handler last.
 *
 * -Wl,--wrap=sigaction routes every sigaction call of the program (OCaml's
 * runtime, Lwt, Go's runtime) through __wrap_sigaction below, which
 *  - ORs SA_ONSTACK into every handler it installs,
 *  - keeps both SIGSEGV handlers and installs a dispatcher: a fault on the
 *    OCaml stack near the stack pointer (a stack overflow) goes to OCaml's,
 *    any other fault (a nil dereference in Go) to Go's, and
 *  - keeps both handlers of an asynchronous signal and installs a
 *    dispatcher that calls the program's, then Go's: both get every signal.
 *    Go's handler is known by its address (Go installs one function for
 *    every signal, SIGSEGV first, from its constructor). SIGPIPE is left
 *    alone: the last disposition wins (a program that ignores it, as
 *    servers do, gets EPIPE from its writes, and so does Go). */

int __real_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

static struct {
  struct sigaction go, program;
  int has_go, has_program, dispatching;
} segv;

/* Calls handler h as the kernel would, for a dispatcher. Go's handler wants
 * every signal of its mask blocked while it runs: block them around it. */
static int is_handler(const struct sigaction *a);

static void call_handler(const struct sigaction *h, int sig, siginfo_t *info, void *uc)
{
  if (!is_handler(h))
    return;
  if (h->sa_flags & SA_SIGINFO) {
    sigset_t saved;
    pthread_sigmask(SIG_BLOCK, &h->sa_mask, &saved);
    h->sa_sigaction(sig, info, uc);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
  } else {
    h->sa_handler(sig);
  }
}

#if OCAML_VERSION_MAJOR < 5
static uintptr_t context_sp(void *uc)
{
#if defined(__x86_64__)
  return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
  return (uintptr_t)((ucontext_t *)uc)->uc_mcontext.sp;
#else
  (void)uc;
  return 0;
#endif
}
#endif

/* OCaml's own test for a stack overflow, minus "the PC is in OCaml code",
 * which OCaml's handler checks itself. EXTRA_STACK is 256 in OCaml 4.x.
 * OCaml 5 detects stack overflows without SIGSEGV (ocaml/ocaml#10898):
 * every fault is Go's. */
static int ocaml_stack_fault(siginfo_t *info, void *uc)
{
#if OCAML_VERSION_MAJOR >= 5
  (void)info;
  (void)uc;
  return 0;
#else
  if (Caml_state == NULL || Caml_state->top_of_stack == NULL)
    return 0;
  uintptr_t fault = (uintptr_t)info->si_addr, sp = context_sp(uc);
  uintptr_t top = (uintptr_t)Caml_state->top_of_stack;
  if (sp == 0) /* no stack pointer on this architecture: the main stack's usual range */
    return fault < top && fault + ((uintptr_t)1 << 30) > top;
  return fault < top && fault + 256 >= sp;
#endif
}

/* OCaml 4.10 to 4.13 on amd64 raise Stack_overflow straight from the
 * signal handler, and the raise reloads the allocation pointer from
 * Caml_state->young_ptr, which native code updates only when it calls C:
 * what OCaml code allocated in the minor heap since its last C call is then
 * allocated again, over live values (plain OCaml 4.13 corrupts its heap so,
 * without this library). The allocation pointer of the interrupted code is
 * in r15: store it where the raise reads it, as OCaml 4.09 did
 * (CONTEXT_YOUNG_PTR), and as 4.14 does again. */
static void save_allocation_pointer(void *uc)
{
#if OCAML_VERSION_MAJOR == 4 && OCAML_VERSION_MINOR >= 10 && OCAML_VERSION_MINOR < 14 && \
    defined(__x86_64__)
  Caml_state->young_ptr = (value *)((ucontext_t *)uc)->uc_mcontext.gregs[REG_R15];
#else
  (void)uc;
#endif
}

/* Installed with OCaml's mask and flags: OCaml's handler raises
 * Stack_overflow straight out of the handler, so the handler must not block
 * anything that would then stay blocked. Go's handler returns, and wants
 * every signal blocked while it runs: we block them around it. */
static void segv_dispatch(int sig, siginfo_t *info, void *uc)
{
  int ocaml_fault = ocaml_stack_fault(info, uc);
  const struct sigaction *h = ocaml_fault ? &segv.program : &segv.go;
  if (ocaml_fault)
    save_allocation_pointer(uc);
  if (h == &segv.go && (h->sa_flags & SA_SIGINFO)) {
    call_handler(h, sig, info, uc);
  } else if (h->sa_flags & SA_SIGINFO) {
    h->sa_sigaction(sig, info, uc);
  } else if (h->sa_handler == SIG_DFL || h->sa_handler == SIG_IGN) {
    /* Restore the default: the fault recurs on return and ends the process,
     * as it would have without us. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    __real_sigaction(sig, &dfl, NULL);
  } else {
    h->sa_handler(sig);
  }
}

static int segv_sigaction(const struct sigaction *act, struct sigaction *old)
{
  /* Go installs its handler from a constructor, before the OCaml runtime
   * exists; every later call is the program's. */
  int from_go = Caml_state == NULL;
  struct sigaction *mine = from_go ? &segv.go : &segv.program;
  int *has = from_go ? &segv.has_go : &segv.has_program;
  if (old != NULL) {
    if (*has)
      *old = *mine;
    else if (__real_sigaction(SIGSEGV, NULL, old) != 0)
      return -1;
  }
  if (act == NULL)
    return 0;
  *mine = *act;
  *has = 1;
  if (!segv.has_go || !segv.has_program)
    return __real_sigaction(SIGSEGV, act, NULL);
  if (segv.dispatching)
    return 0;
  struct sigaction d = segv.program;
  d.sa_sigaction = segv_dispatch;
  d.sa_flags |= SA_SIGINFO | SA_ONSTACK;
  segv.dispatching = 1;
  return __real_sigaction(SIGSEGV, &d, NULL);
}

/* A handler is known by its address alone (sa_handler and sa_sigaction
 * share it): Go sets SA_SIGINFO even when it installs SIG_DFL or SIG_IGN. */
static int is_handler(const struct sigaction *a)
{
  return a->sa_handler != SIG_DFL && a->sa_handler != SIG_IGN;
}

static int same_handler(const struct sigaction *a, const struct sigaction *b)
{
  return a->sa_handler == b->sa_handler;
}

/* Both handlers of each asynchronous signal, while both exist or while Go's
 * stands alone; has_go and has_program say which. Written under the
 * program's sigaction calls, read by the dispatcher. */
static struct {
  struct sigaction go, program;
  volatile int has_go, has_program;
} both[NSIG];

static void dispatch_both(int sig, siginfo_t *info, void *uc)
{
  if (both[sig].has_program)
    call_handler(&both[sig].program, sig, info, uc);
  if (both[sig].has_go)
    call_handler(&both[sig].go, sig, info, uc);
}

static int installs_onstack(int sig, const struct sigaction *act, struct sigaction *old)
{
  if (act != NULL && !(act->sa_flags & SA_ONSTACK) && is_handler(act)) {
    struct sigaction onstack = *act;
    onstack.sa_flags |= SA_ONSTACK;
    return __real_sigaction(sig, &onstack, old);
  }
  return __real_sigaction(sig, act, old);
}

static int is_synchronous(int sig)
{
  return sig == SIGBUS || sig == SIGFPE || sig == SIGILL || sig == SIGTRAP || sig == SIGSYS;
}

/* An asynchronous signal. A query answers with the program's handler when
 * it has one, so that Go saves it (and restores it at signal.Reset). */
static int async_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
  if (old != NULL) {
    if (both[sig].has_program)
      *old = both[sig].program;
    else if (both[sig].has_go)
      *old = both[sig].go;
    else if (__real_sigaction(sig, NULL, old) != 0)
      return -1;
  }
  if (act == NULL)
    return 0;
  int from_go = segv.has_go && same_handler(act, &segv.go);
  if (from_go) {
    both[sig].go = *act;
    both[sig].has_go = 1;
  } else if (both[sig].has_go && !is_handler(act) && (act->sa_flags & SA_SIGINFO)) {
    /* Go withdraws (signal.Stop, Reset, Ignore put back the disposition it
     * saved, SIG_DFL or SIG_IGN, always with SA_SIGINFO): the program's
     * handler, if any, stays. */
    both[sig].has_go = 0;
    if (!both[sig].has_program)
      return __real_sigaction(sig, act, NULL);
  } else if (both[sig].has_go && both[sig].has_program && same_handler(act, &both[sig].program)) {
    both[sig].has_go = 0; /* Go's withdrawal puts the program's handler back */
  } else if (is_handler(act)) {
    both[sig].program = *act;
    both[sig].has_program = 1;
  } else {
    both[sig].has_program = 0; /* the program stops handling it: Go's, if any, stays */
    if (!both[sig].has_go)
      return __real_sigaction(sig, act, NULL);
  }
  if (!(both[sig].has_go && both[sig].has_program))
    return installs_onstack(sig, both[sig].has_go ? &both[sig].go : &both[sig].program, NULL);
  struct sigaction d = both[sig].program;
  d.sa_sigaction = dispatch_both;
  d.sa_flags |= SA_SIGINFO | SA_ONSTACK;
  return __real_sigaction(sig, &d, NULL);
}

int __wrap_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
  if (sig == SIGSEGV)
    return segv_sigaction(act, old);
  if (sig <= 0 || sig >= NSIG || sig == SIGPIPE || is_synchronous(sig) || sig == SIGKILL || sig == SIGSTOP)
    return installs_onstack(sig, act, old);
  return async_sigaction(sig, act, old);
}
