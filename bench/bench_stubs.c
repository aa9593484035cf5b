/* The C of bench.exe: a monotonic clock, an empty call into Go, and the
 * physical limit of a wake, two threads ping-ponging over a pair of
 * eventfds. */

#define _GNU_SOURCE
#define CAML_NAME_SPACE
#include <caml/alloc.h>
#include <caml/fail.h>
#include <caml/memory.h>
#include <caml/mlvalues.h>
#include <caml/signals.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

double bench_now(value unit)
{
  struct timespec ts;
  (void)unit;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

value bench_now_byte(value unit) { return caml_copy_double(bench_now(unit)); }

/* ---- baseline/cgo-callback ------------------------------------------------ */

extern long benchAdd1(long n); /* exported by bench/gomain */

/* An OCaml external calling into Go, as Lwt_interop.bind_sync's does, for a
 * Go function that does nothing else. */
value bench_cgo_callback(value n) { return Val_long(benchAdd1(Long_val(n))); }

/* ---- limit/eventfd-pingpong ----------------------------------------------- */

/* An eventfd adds up what is written to it: the ping value 1 asks for a
 * pong, STOP (sent alone, never added to a pending 1) ends the ponger. */
enum { STOP = 2 };

static int put(int fd, uint64_t v)
{
  ssize_t r;
  do
    r = write(fd, &v, sizeof v);
  while (r < 0 && errno == EINTR);
  return r == sizeof v;
}

static int get(int fd, uint64_t *v)
{
  ssize_t r;
  do
    r = read(fd, v, sizeof *v);
  while (r < 0 && errno == EINTR);
  return r == sizeof *v;
}

struct pingpong {
  int ping, pong; /* blocking eventfds */
};

static void *ponger(void *arg)
{
  struct pingpong *p = arg;
  uint64_t v;
  while (get(p->ping, &v) && v != STOP && put(p->pong, 1))
    ;
  return NULL;
}

/* Round trips between this thread and a new one for secs seconds, with the
 * OCaml runtime released: returns (round trips, seconds taken). */
value bench_pingpong(value secs)
{
  CAMLparam1(secs);
  CAMLlocal1(res);
  double dt = Double_val(secs);
  struct pingpong p = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC)};
  pthread_t th;
  if (p.ping < 0 || p.pong < 0 || pthread_create(&th, NULL, ponger, &p) != 0) {
    if (p.ping >= 0)
      close(p.ping);
    if (p.pong >= 0)
      close(p.pong);
    caml_failwith("bench_pingpong: cannot create the eventfds or the thread");
  }
  long n = 0;
  int ok = 1;
  double t0, elapsed;
  caml_enter_blocking_section();
  t0 = bench_now(Val_unit);
  do {
    uint64_t v;
    for (int i = 0; ok && i < 256; i++)
      ok = put(p.ping, 1) && get(p.pong, &v);
    n += 256;
  } while (ok && bench_now(Val_unit) < t0 + dt);
  elapsed = bench_now(Val_unit) - t0;
  put(p.ping, STOP);
  pthread_join(th, NULL);
  caml_leave_blocking_section();
  close(p.ping);
  close(p.pong);
  if (!ok)
    caml_failwith("bench_pingpong: an eventfd read or write failed");
  res = caml_alloc_tuple(2);
  Store_field(res, 0, Val_long(n));
  Store_field(res, 1, caml_copy_double(elapsed));
  CAMLreturn(res);
}
