/* C helpers of the test programs (not of the library). */
#define CAML_NAME_SPACE
#include <caml/alloc.h>
#include <caml/mlvalues.h>
#include <time.h>

/* The process's CPU time in ns, read without entering Go. */
value cases_process_cpu_ns(value unit)
{
  struct timespec ts;
  (void)unit;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return Val_long((long)ts.tv_sec * 1000000000L + ts.tv_nsec);
}

/* ---- Instruction counts (make bench-instr) --------------------------------
 *
 * Under valgrind's callgrind, zero the counts and dump them with a label:
 * what ran in between is one measure. Elsewhere (or without valgrind's
 * headers) these do nothing. */
#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_ZERO_STATS
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(label) ((void)(label))
#endif

value test_callgrind_zero(value unit)
{
  (void)unit;
  CALLGRIND_ZERO_STATS;
  return Val_unit;
}

value test_callgrind_dump(value label)
{
  CALLGRIND_DUMP_STATS_AT(String_val(label));
  return Val_unit;
}
