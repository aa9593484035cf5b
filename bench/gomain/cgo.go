package main

/*
// An empty C function: the least any call from Go into C costs.
static void bench_empty(void) {}
*/
import "C"

import "time"

// cgoCall measures calls from Go into an empty C function, in a sync
// function: on the Lwt thread inside a call from OCaml, where the library
// makes its calls into OCaml. The baseline of raw/go-to-ocaml-call.
func cgoCall(unit) (string, error) {
	return measure(func(deadline time.Time) (int64, error) {
		return until(deadline, 64, func() error {
			C.bench_empty()
			return nil
		})
	})
}
