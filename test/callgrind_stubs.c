/* Instruction counts for make bench-instr, in test/seed.exe and
 * bench/bench.exe (which copies this file): under valgrind's callgrind,
 * zero the counts and dump them with a label, and what ran in between is
 * one measure. Elsewhere (or built without valgrind's headers) these do
 * nothing. */
#define CAML_NAME_SPACE
#include <caml/mlvalues.h>

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#endif
#endif
#ifndef CALLGRIND_ZERO_STATS
#define CALLGRIND_ZERO_STATS
#define CALLGRIND_DUMP_STATS_AT(label) ((void)(label))
#endif

value lwt_callgrind_zero(value unit)
{
  (void)unit;
  CALLGRIND_ZERO_STATS;
  return Val_unit;
}

value lwt_callgrind_dump(value label)
{
  CALLGRIND_DUMP_STATS_AT(String_val(label));
  return Val_unit;
}
