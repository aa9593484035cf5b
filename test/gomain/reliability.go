package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"time"

	"lwt"
)

// gcValue is (int option * (string * (bytes * float))) list in OCaml.
type gcValue = []lwt.Pair[*int64, lwt.Pair[string, lwt.Pair[[]byte, float64]]]

// gcValueOf is value_of in test_reliability.ml: both sides build the same
// value for i, and each checks what the other sent.
func gcValueOf(i int64) gcValue {
	var v gcValue
	for k := range i % 4 {
		e := lwt.Pair[*int64, lwt.Pair[string, lwt.Pair[[]byte, float64]]]{}
		if (i+k)%3 != 0 {
			n := i * k
			e.First = &n
		}
		e.Second.First = strconv.FormatInt(i+k, 10)
		e.Second.Second.First = bytes.Repeat([]byte{byte(i + k)}, int(k)+1)
		e.Second.Second.Second = float64(i) / 7
		v = append(v, e)
	}
	return v
}

func gcValueEqual(a, b gcValue) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if (x.First == nil) != (y.First == nil) || x.First != nil && *x.First != *y.First ||
			x.Second.First != y.Second.First || !bytes.Equal(x.Second.Second.First, y.Second.Second.First) ||
			x.Second.Second.Second != y.Second.Second.Second {
			return false
		}
	}
	return true
}

func registerReliability() {
	// GC stress: Go builds values for OCaml to check, and checks OCaml's,
	// with runtime.GC() every 1,000.
	must(lwt.RegisterSync("rel.gc_value", func(i int64) (gcValue, error) {
		if i%1000 == 0 {
			runtime.GC()
		}
		return gcValueOf(i), nil
	}))
	must(lwt.RegisterTask("rel.gc_check", func(ctx context.Context, n int64) (int64, error) {
		f, err := lwt.Lookup[int64, gcValue]("rel.ocaml_gc_value")
		if err != nil {
			return 0, err
		}
		for i := range n {
			v, err := f.Call(ctx, i)
			if err != nil {
				return i, err
			}
			if !gcValueEqual(v, gcValueOf(i)) {
				return i, fmt.Errorf("OCaml's value %d arrived changed: %v", i, v)
			}
			if i%1000 == 0 {
				runtime.GC()
			}
		}
		return n, nil
	}))

	// Leaks: round trips in a loop, and the counts to compare.
	must(lwt.RegisterSync("rel.add1", func(n int64) (int64, error) { return n + 1, nil }))
	must(lwt.RegisterTask("rel.task_add1", func(_ context.Context, n int64) (int64, error) { return n + 1, nil }))
	must(lwt.RegisterTask("rel.call_loop", func(ctx context.Context, n int64) (int64, error) {
		f, err := lwt.Lookup[int64, int64]("rel.ocaml_add1")
		if err != nil {
			return 0, err
		}
		var x int64
		for range n {
			if x, err = f.Call(ctx, x); err != nil {
				return x, err
			}
		}
		return x, nil
	}))
	must(lwt.RegisterSync("rel.goroutines", func(struct{}) (int64, error) {
		return int64(runtime.NumGoroutine()), nil
	}))

	// Load: n goroutines each call OCaml's echo with a random payload, a
	// third of them under a random deadline that may cut the call short.
	// Reports the first wrong answer, or how many calls were answered and
	// how many cut short.
	must(lwt.Register("rel.load", func(ctx context.Context, n int64) (string, error) {
		echo, err := lwt.Lookup[string, string]("rel.ocaml_echo")
		if err != nil {
			return "", err
		}
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			wrong    error
			cut, got int
		)
		for i := range n {
			wg.Go(func() {
				payload := string(bytes.Repeat([]byte{byte(i)}, rand.IntN(4096)))
				cctx, cancel := ctx, context.CancelFunc(func() {})
				if i%3 == 0 {
					cctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(2000))*time.Microsecond)
				}
				defer cancel()
				r, err := echo.Call(cctx, payload)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil && r == payload:
					got++
				case i%3 == 0 && errors.Is(err, context.DeadlineExceeded):
					cut++
				case wrong == nil:
					wrong = fmt.Errorf("call %d: %q (%d bytes), %v", i, r[:min(len(r), 16)], len(r), err)
				}
			})
		}
		wg.Wait()
		if wrong != nil {
			return "", wrong
		}
		return fmt.Sprintf("%d %d", got, cut), nil
	}))
}
