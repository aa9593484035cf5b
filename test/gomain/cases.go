package main

// The Go functions of test/cases.ml: each case runs in a process of its
// own (TestEndToEnd/cases), so that a crash, a hang or a corrupted heap is
// that case's failure alone.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"lwt"
)

// callOCaml calls the OCaml function registered as name with arg and
// returns its result as text, or its error's text.
func callOCaml(ctx context.Context, name string, arg int64) (string, error) {
	f, err := lwt.Lookup[int64, int64](name)
	if err != nil {
		return "", err
	}
	v, err := f.Call(ctx, arg)
	if err != nil {
		return "error: " + err.Error(), nil
	}
	return strconv.FormatInt(v, 10), nil
}

func registerCases() {
	// Errors that cross back and forth: cases.chain calls cases.go_chain
	// with n-1, which calls cases.chain again, down to 0.
	must(lwt.RegisterSync("cases.go_chain", func(n int64) (int64, error) {
		chain, err := lwt.Lookup[int64, int64]("cases.chain")
		if err != nil {
			return 0, err
		}
		return chain.Call(context.Background(), n)
	}))

	// Each kind of Go function calling an OCaml function.
	call := func(ctx context.Context, name string) (string, error) { return callOCaml(ctx, name, 7) }
	must(lwt.RegisterTask("cases.call_task", call))
	must(lwt.Register("cases.call_goroutine", call))
	must(lwt.RegisterSync("cases.call_sync", func(name string) (string, error) {
		return callOCaml(context.Background(), name, 7)
	}))

	// runtime.Goexit in each kind of Go function.
	must(lwt.Register("cases.goexit_goroutine", func(context.Context, unit) (unit, error) {
		runtime.Goexit()
		return unit{}, nil
	}))
	must(lwt.RegisterTask("cases.goexit_task", func(context.Context, unit) (unit, error) {
		runtime.Goexit()
		return unit{}, nil
	}))
	must(lwt.RegisterSync("cases.goexit_sync", func(unit) (unit, error) {
		runtime.Goexit()
		return unit{}, nil
	}))

	// n calls, each under a 1 ms deadline, of an OCaml function whose
	// promise never settles (and ignores Lwt.cancel).
	must(lwt.RegisterTask("cases.deadlines", func(ctx context.Context, n int64) (int64, error) {
		f, err := lwt.Lookup[unit, unit]("cases.never")
		if err != nil {
			return 0, err
		}
		var timedOut int64
		for range n {
			cctx, cancel := context.WithTimeout(ctx, time.Millisecond)
			_, err := f.Call(cctx, unit{})
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				timedOut++
			}
		}
		return timedOut, nil
	}))

	// Values and errors too large for OCaml once the address space is capped.
	// Caps the address space at its size now plus headroomMiB (no cap if
	// negative): room for what Go needs next, not for OCaml's allocation.
	must(lwt.RegisterSync("cases.cap_address_space", func(headroomMiB int64) (unit, error) {
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_AS, &lim); err != nil {
			return unit{}, err
		}
		lim.Cur = lim.Max
		if headroomMiB >= 0 {
			statm, err := os.ReadFile("/proc/self/statm")
			if err != nil {
				return unit{}, err
			}
			pages, err := strconv.ParseUint(strings.Fields(string(statm))[0], 10, 64)
			if err != nil {
				return unit{}, err
			}
			lim.Cur = pages*uint64(os.Getpagesize()) + uint64(headroomMiB)<<20
		}
		return unit{}, unix.Setrlimit(unix.RLIMIT_AS, &lim)
	}))
	// One buffer, made once, so that Go's own footprint stays that size.
	var buf []byte
	bigBytes := func(mib int64) []byte {
		if len(buf) < int(mib)<<20 {
			buf = bytes.Repeat([]byte("x"), int(mib)<<20)
		}
		return buf[:mib<<20]
	}
	big := func(mib int64) string { b := bigBytes(mib); return unsafe.String(&b[0], len(b)) }
	must(lwt.RegisterSync("cases.prepare_big", func(mib int64) (unit, error) { bigBytes(mib); return unit{}, nil }))
	must(lwt.RegisterSync("cases.big_string", func(mib int64) (string, error) { return big(mib), nil }))
	must(lwt.RegisterSync("cases.big_bytes", func(mib int64) ([]byte, error) { return bigBytes(mib), nil }))
	must(lwt.RegisterSync("cases.big_in_list", func(mib int64) ([]*string, error) {
		s := big(mib)
		return []*string{nil, &s}, nil
	}))
	must(lwt.Register("cases.big_error", func(_ context.Context, mib int64) (unit, error) {
		return unit{}, errors.New(big(mib))
	}))
	must(lwt.RegisterTask("cases.big_argument", func(ctx context.Context, mib int64) (string, error) {
		f, err := lwt.Lookup[string, int64]("cases.length")
		if err != nil {
			return "", err
		}
		if _, err := f.Call(ctx, big(mib)); err != nil {
			return err.Error(), nil
		}
		return "no error", nil
	}))

	// A Go value of 1 MiB held by OCaml.
	must(lwt.RegisterSync("cases.big_handle", func(unit) (lwt.Handle[[]byte], error) {
		return lwt.Handle[[]byte]{Value: make([]byte, 1<<20)}, nil
	}))

	// Calls cases.promise (an OCaml function returning one kind of promise)
	// under a deadline of ms milliseconds; the outcome as text.
	must(lwt.Register("cases.call_kind", func(ctx context.Context, a lwt.Pair[int64, int64]) (string, error) {
		f, err := lwt.Lookup[int64, int64]("cases.promise")
		if err != nil {
			return "", err
		}
		ctx, cancel := context.WithTimeout(ctx, time.Duration(a.Second)*time.Millisecond)
		defer cancel()
		v, err := f.Call(ctx, a.First)
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return "deadline", nil
		case err != nil:
			return err.Error(), nil
		}
		return fmt.Sprint("value ", v), nil
	}))

	must(lwt.RegisterSync("cases.set_timer_slack", func(ns int64) (unit, error) {
		return unit{}, unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(ns), 0, 0, 0)
	}))
	must(lwt.RegisterSync("cases.timer_slack", func(unit) (int64, error) {
		n, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0)
		return int64(n), err
	}))

	// Signals that both Go and OCaml handle: Go counts what it receives.
	var notified [64]atomic.Int64
	chans := map[int64]chan os.Signal{}
	must(lwt.RegisterSync("cases.notify", func(sig int64) (unit, error) {
		ch := make(chan os.Signal, 16)
		chans[sig] = ch
		signal.Notify(ch, syscall.Signal(sig))
		go func() {
			for range ch {
				notified[sig].Add(1)
			}
		}()
		return unit{}, nil
	}))
	must(lwt.RegisterSync("cases.reset", func(sig int64) (unit, error) {
		signal.Reset(syscall.Signal(sig))
		return unit{}, nil
	}))
	must(lwt.RegisterSync("cases.stop", func(sig int64) (unit, error) {
		signal.Stop(chans[sig]) // as NotifyContext's stop does
		return unit{}, nil
	}))
	must(lwt.RegisterSync("cases.notified", func(sig int64) (int64, error) { return notified[sig].Load(), nil }))
	must(lwt.RegisterSync("cases.write_closed_pipe", func(unit) (string, error) {
		r, w, err := os.Pipe()
		if err != nil {
			return "", err
		}
		r.Close()
		defer w.Close()
		_, err = w.Write([]byte("x"))
		return fmt.Sprint(err), nil
	}))

	must(lwt.Register("cases.wait_cancel", func(ctx context.Context, _ unit) (string, error) {
		select {
		case <-ctx.Done():
			return "cancelled", nil
		case <-time.After(10 * time.Second):
			return "not cancelled", nil
		}
	}))
}
