// Command gomain is the Go half of the end-to-end tests and the demo: built
// with -buildmode=c-archive and linked into the OCaml executables of test/.
// test/go_bindings.ml is generated from it (TestBindingsAreCurrent checks).
package main

//go:generate go run lwt/cmd/lwt-bindgen -o ../go_bindings.ml .

import "C" // a c-archive needs cgo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"lwt"
)

type unit = struct{}

type counter struct{ n int64 }

// nested is (bool option list * (float * bytes)) in OCaml.
type nested = lwt.Pair[[]*bool, lwt.Pair[float64, []byte]]

var (
	cancelled atomic.Int64
	lastErr   atomic.Value // string: an error seen by a goroutine, for test.last_err
)

// seedLoop is the seed's scenario: call the Lwt closure F, await its
// promise, forever (until the call is cancelled). Registered twice: as a
// loop task and as a goroutine.
func seedLoop(ctx context.Context, f *lwt.Func[unit, unit]) (unit, error) {
	defer f.Release()
	for {
		if _, err := f.Call(ctx, unit{}); err != nil {
			return unit{}, err
		}
	}
}

// showOutcome shows what an OCaml call returned; an exception raised by
// the function itself keeps its backtrace.
func showOutcome(v int64, err error) string {
	var e *lwt.OCamlError
	if errors.As(err, &e) && strings.HasPrefix(e.Backtrace, "Raised at") {
		return fmt.Sprint(v, " ", err, " (backtrace)")
	}
	return fmt.Sprint(v, " ", err)
}

// Several tasks resumed by one answer of OCaml's (a promise's waiters):
// the first calls OCaml with a string, the second (the other) then calls
// OCaml or releases the function; OCaml sees the calls in the tasks' order.
func resumedTogether(ctx context.Context, f *lwt.Func[string, string], other func(ctx context.Context) (string, error)) (string, error) {
	defer f.Release()
	p := f.Go(ctx, "wait")
	second := lwt.Spawn(ctx, func(ctx context.Context) (string, error) {
		if _, err := p.Await(ctx); err != nil {
			return "", err
		}
		return other(ctx)
	})
	if _, err := p.Await(ctx); err != nil {
		return "", err
	}
	first, err := f.Call(ctx, strings.Repeat("A", 24))
	v, err2 := second.Await(ctx)
	return fmt.Sprint(first, " ", err, ", ", v, " ", err2), nil
}

func init() {
	must(lwt.RegisterTask("test.resumed_together", func(ctx context.Context, f *lwt.Func[string, string]) (string, error) {
		return resumedTogether(ctx, f, func(ctx context.Context) (string, error) { return f.Call(ctx, "B") })
	}))
	must(lwt.RegisterTask("test.resumed_together_release", func(ctx context.Context, f *lwt.Func[string, string]) (string, error) {
		return resumedTogether(ctx, f, func(context.Context) (string, error) { f.Release(); return "released", nil })
	}))
	// A call made as the task resumes, whose OCaml code tries to shut the
	// bridge down: refused, as in any OCaml code that Go called.
	must(lwt.RegisterTask("test.shutdown_in_resumed_call", func(ctx context.Context, f *lwt.Func[string, string]) (string, error) {
		defer f.Release()
		if _, err := f.Call(ctx, "wait"); err != nil {
			return "", err
		}
		return f.Call(ctx, "shutdown")
	}))
}

// A task's own context ends while two Func.Go calls run under it whose
// OCaml promises are one, or chained: cancelling the first settles the
// second at once.
func init() {
	must(lwt.RegisterTask("test.cancel_settles_another", func(ctx context.Context, f *lwt.Func[int64, int64]) (string, error) {
		defer f.Release()
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		inner := lwt.Spawn(cctx, func(ctx context.Context) (string, error) {
			p1 := f.Go(ctx, 1)
			p2 := f.Go(ctx, 2)
			never, _ := lwt.NewPromise[int]()
			go func() { time.Sleep(20 * time.Millisecond); cancel() }()
			_, err := never.Await(ctx) // woken by ctx's end
			_, e1 := p1.Await(context.Background())
			_, e2 := p2.Await(context.Background())
			return fmt.Sprint(err, " | ", e1, " | ", e2), nil
		})
		tctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		return inner.Await(tctx)
	}))
	// A call made as its task resumes (deferred), whose OCaml code resumes
	// another task, which defers a call too, then tries to shut down.
	must(lwt.RegisterTask("test.shutdown_in_nested_resumed_call", func(ctx context.Context, f *lwt.Func[string, string]) (string, error) {
		defer f.Release()
		other := lwt.Spawn(ctx, func(ctx context.Context) (string, error) {
			if _, err := f.Call(ctx, "wait2"); err != nil {
				return "", err
			}
			return f.Call(ctx, "y")
		})
		if _, err := f.Call(ctx, "wait"); err != nil {
			return "", err
		}
		x, err := f.Call(ctx, "x")
		y, err2 := other.Await(ctx)
		return fmt.Sprint(x, " ", err, ", ", y, " ", err2), nil
	}))
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func init() {
	must(lwt.RegisterTask("seed.task", seedLoop))
	must(lwt.Register("seed.goroutine", seedLoop))

	must(lwt.RegisterSync("test.add1", func(n int64) (int64, error) { return n + 1, nil }))
	must(lwt.Register("test.echo", func(_ context.Context, s string) (string, error) { return s, nil }))
	must(lwt.RegisterTask("test.nil_task", func(context.Context, unit) (int64, error) {
		var p *int64
		return *p, nil
	}))
	must(lwt.RegisterSync("test.nil_sync", func(unit) (int64, error) {
		var p *int64
		return *p, nil
	}))
	must(lwt.Register("test.nil_goroutine", func(context.Context, unit) (int64, error) {
		var p *int64
		return *p, nil
	}))
	// Other runtime panics, and panic with a value, in each kind.
	panics := func(what string) (int64, error) {
		switch what {
		case "index":
			var s []int64
			return s[len(what)], nil
		case "divide":
			zero := int64(len(what) - 6)
			return 1 / zero, nil
		default:
			panic(what)
		}
	}
	must(lwt.RegisterTask("test.panic_task", func(_ context.Context, what string) (int64, error) { return panics(what) }))
	must(lwt.Register("test.panic_goroutine", func(_ context.Context, what string) (int64, error) { return panics(what) }))
	must(lwt.RegisterSync("test.panic_sync", panics))
	must(lwt.RegisterTask("test.call_twice", func(ctx context.Context, f *lwt.Func[int64, int64]) (int64, error) {
		defer f.Release()
		a, err := f.Call(ctx, 1)
		if err != nil {
			return 0, err
		}
		return f.Go(ctx, a).Await(ctx)
	}))
	// Every outcome of an OCaml call (settled at once or later, value or
	// exception), through Call and through Go, from a task and a goroutine.
	outcomes := func(ctx context.Context, f *lwt.Func[int64, int64]) (string, error) {
		defer f.Release()
		var out []string
		for x := int64(1); x <= 4; x++ {
			out = append(out, showOutcome(f.Call(ctx, x)))
			out = append(out, showOutcome(f.Go(ctx, x).Await(ctx)))
		}
		return strings.Join(out, "|"), nil
	}
	must(lwt.RegisterTask("test.outcomes_task", outcomes))
	must(lwt.Register("test.outcomes_goroutine", outcomes))
	// Every outcome of a call that a task makes as soon as OCaml's answer
	// to its previous call (a value, then an exception: resumeBy) resumed
	// it: the call that the task leaves to the C stubs (func.go's mayDefer).
	must(lwt.RegisterTask("test.outcomes_resumed", func(ctx context.Context, f *lwt.Func[int64, int64]) (string, error) {
		defer f.Release()
		var out []string
		for _, resumeBy := range []int64{2, 4} {
			for _, x := range []int64{1, 3, 5, 6, 2, 4} {
				out = append(out, showOutcome(f.Call(ctx, resumeBy))+" then "+showOutcome(f.Call(ctx, x)))
			}
		}
		return strings.Join(out, "|"), nil
	}))
	// Values: echoed, described from Go's side, and sent to OCaml and back.
	must(lwt.Register("test.echo_bytes", func(_ context.Context, b []byte) ([]byte, error) { return b, nil }))
	must(lwt.Register("test.echo_nested", func(_ context.Context, x nested) (nested, error) { return x, nil }))
	must(lwt.RegisterSync("test.describe", func(x []lwt.Pair[*int64, string]) (string, error) {
		var out []string
		for _, p := range x {
			if p.First == nil {
				out = append(out, "None:"+p.Second)
			} else {
				out = append(out, fmt.Sprintf("%d:%s", *p.First, p.Second))
			}
		}
		return strings.Join(out, ","), nil
	}))
	must(lwt.RegisterSync("test.too_big_in_list", func(unit) ([]int64, error) { return []int64{1, 1 << 62}, nil }))
	must(lwt.RegisterTask("test.ocaml_reverses", func(ctx context.Context, f *lwt.Func[[]lwt.Pair[*int64, string], []lwt.Pair[*int64, string]]) (string, error) {
		defer f.Release()
		one, two := int64(1), int64(-2)
		in := []lwt.Pair[*int64, string]{{First: &one, Second: "a"}, {}, {First: &two, Second: "c\x00\xff"}}
		out, err := f.Call(ctx, in)
		if err != nil {
			return "", err
		}
		if len(out) != 3 || out[0].Second != "c\x00\xff" || *out[0].First != -2 || out[1].First != nil ||
			*out[2].First != 1 || out[2].Second != "a" {
			return fmt.Sprintf("unexpected %+v", out), nil
		}
		empty, err := f.Call(ctx, nil)
		if err != nil || len(empty) != 0 {
			return fmt.Sprintf("nil slice: %v %v", empty, err), nil
		}
		return "ok", nil
	}))
	// OCaml functions registered by name: test_lwt_interop.ml registers
	// ocaml.tenfold (int -> int Lwt.t, settles later) and ocaml.upper
	// (string -> string, sync; raises on "").
	named := func(ctx context.Context, _ unit) (string, error) {
		tenfold, upper, err := lookupNamed()
		if err != nil {
			return "", err
		}
		n, err1 := tenfold.Call(ctx, 4)
		s, err2 := upper.Call(ctx, "abc")
		_, err3 := upper.Call(ctx, "")
		_, err4 := lwt.Lookup[int64, int64]("ocaml.nope")
		_, err5 := lwt.Lookup[string, int64]("ocaml.tenfold")
		return fmt.Sprintf("%v %v %v %v %v | %v | %v", n, err1, s, err2, err3, err4, err5), nil
	}
	must(lwt.RegisterTask("test.named_task", named))
	must(lwt.Register("test.named_goroutine", named))
	must(lwt.RegisterSync("test.named_sync", func(unit) (string, error) {
		tenfold, upper, err := lookupNamed()
		if err != nil {
			return "", err
		}
		s, err1 := upper.Call(context.Background(), "sync")
		_, err2 := tenfold.Call(context.Background(), 1)
		return fmt.Sprintf("%v %v | %v", s, err1, err2), nil
	}))
	// Running Go code on the Lwt thread from a goroutine: Post, OnLoop and
	// Spawn; ocaml.on_lwt_thread (unit -> bool, sync) tells where it ran.
	must(lwt.Register("test.on_loop", func(ctx context.Context, _ unit) (string, error) {
		onLwt, err := lwt.Lookup[unit, bool]("ocaml.on_lwt_thread")
		if err != nil {
			return "", err
		}
		tenfold, err := lwt.Lookup[int64, int64]("ocaml.tenfold")
		if err != nil {
			return "", err
		}
		posted := make(chan bool, 1)
		if err := lwt.Post(func() {
			on, _ := onLwt.Call(ctx, unit{})
			posted <- on
		}); err != nil {
			return "", err
		}
		onLoop, err := lwt.OnLoop(func() (bool, error) { return onLwt.Call(ctx, unit{}) }).Await(ctx)
		if err != nil {
			return "", err
		}
		spawned, err := lwt.Spawn(ctx, func(ctx context.Context) (int64, error) {
			return tenfold.Call(ctx, 5) // a task may await OCaml
		}).Await(ctx)
		if err != nil {
			return "", err
		}
		here, err := onLwt.Call(ctx, unit{})
		return fmt.Sprintf("post=%v onloop=%v spawn=%v goroutine=%v %v", <-posted, onLoop, spawned, here, err), nil
	}))
	// Shutdown: a call that answers its cancelled context within the grace
	// period, one that does not, a goroutine awaiting OCaml, and Shutdown
	// from Go.
	must(lwt.Register("test.slow_to_stop", func(ctx context.Context, _ unit) (string, error) {
		<-ctx.Done()
		time.Sleep(10 * time.Millisecond)
		return "stopped: " + ctx.Err().Error(), nil
	}))
	must(lwt.Register("test.never_stops", func(context.Context, unit) (string, error) {
		time.Sleep(500 * time.Millisecond)
		return "late", nil
	}))
	must(lwt.Register("test.await_forever", func(_ context.Context, f *lwt.Func[unit, unit]) (unit, error) {
		_, err := f.Call(context.Background(), unit{})
		lastErr.Store(fmt.Sprint(err))
		return unit{}, err
	}))
	must(lwt.Register("test.go_shutdown", func(context.Context, unit) (unit, error) {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			lastErr.Store(fmt.Sprint(lwt.Shutdown(ctx)))
		}()
		return unit{}, nil
	}))
	must(lwt.RegisterSync("test.shutdown_on_loop", func(unit) (string, error) {
		return fmt.Sprint(lwt.Shutdown(context.Background())), nil
	}))
	// Looks name up: the bridge then holds a root to it (the types do not
	// matter here: a mismatch is an error after the function is found).
	must(lwt.RegisterSync("test.look_up", func(name string) (unit, error) {
		_, err := lwt.Lookup[unit, unit](name)
		if err != nil && !strings.Contains(err.Error(), "but Go looks it up as") {
			return unit{}, err
		}
		return unit{}, nil
	}))
	must(lwt.RegisterSync("test.last_err", func(unit) (string, error) {
		s, _ := lastErr.Swap("").(string)
		return s, nil
	}))
	// Handles: Go values held by OCaml; and OCaml values held by Go.
	must(lwt.RegisterSync("test.new_counter", func(n int64) (lwt.Handle[*counter], error) {
		return lwt.Handle[*counter]{Value: &counter{n}}, nil
	}))
	must(lwt.RegisterSync("test.bump", func(h lwt.Handle[*counter]) (int64, error) {
		h.Value.n++
		return h.Value.n, nil
	}))
	must(lwt.RegisterSync("test.string_handle", func(h lwt.Handle[string]) (string, error) { return h.Value, nil }))
	// A handle of a nil interface value: it keeps its Go type.
	must(lwt.RegisterSync("test.nil_error_handle", func(unit) (lwt.Handle[error], error) { return lwt.Handle[error]{}, nil }))
	must(lwt.RegisterSync("test.error_handle", func(h lwt.Handle[error]) (bool, error) { return h.Value == nil, nil }))
	var kept *lwt.Value
	must(lwt.RegisterSync("test.keep", func(v *lwt.Value) (unit, error) { kept = v; return unit{}, nil }))
	must(lwt.RegisterSync("test.give_back", func(unit) (*lwt.Value, error) { return kept, nil }))
	must(lwt.RegisterSync("test.nil_value", func(unit) (*lwt.Value, error) { return nil, nil }))
	must(lwt.RegisterSync("test.release_kept", func(unit) (unit, error) { kept.Release(); return unit{}, nil }))
	// Re-entrant chains: OCaml -> Go -> OCaml -> Go ..., each side counting.
	must(lwt.RegisterSync("test.reenter", func(n int64) (int64, error) {
		if n == 0 {
			return 0, nil
		}
		reenter, err := lwt.Lookup[int64, int64]("ocaml.reenter")
		if err != nil {
			return 0, err
		}
		m, err := reenter.Call(context.Background(), n-1)
		return m + 1, err
	}))
	registerReliability()
	registerCases()

	// Found in review: a sync function's result must survive the GC that
	// the tasks resumed on its way out may run (ocaml.gc_and_alloc runs
	// Gc.minor and fills the minor heap).
	must(lwt.RegisterSync("test.sync_result_vs_tasks", func(n int64) (string, error) {
		gcAlloc, err := lwt.Lookup[unit, unit]("ocaml.gc_and_alloc")
		if err != nil {
			return "", err
		}
		ctx := context.Background()
		lwt.Spawn(ctx, func(ctx context.Context) (unit, error) {
			lwt.Spawn(ctx, func(ctx context.Context) (unit, error) { // queued: A runs
				return gcAlloc.Call(ctx, unit{})
			})
			return unit{}, nil
		})
		return strings.Repeat("x", int(n)), nil
	}))
	// Found in review: a task that retries Call forever after shutdown
	// stopped it must still end; and two Shutdowns racing a Post.
	must(lwt.RegisterTask("test.retry_forever", func(ctx context.Context, f *lwt.Func[unit, unit]) (unit, error) {
		for {
			f.Call(context.Background(), unit{}) // errors ignored on purpose
		}
	}))
	must(lwt.RegisterTask("test.retry_forever_await", func(ctx context.Context, f *lwt.Func[unit, unit]) (unit, error) {
		for {
			f.Go(context.Background(), unit{}).Await(context.Background()) // settled at once after shutdown
		}
	}))
	// Found in review: Shutdown from a Go call waits for that very call.
	must(lwt.Register("test.shutdown_self", func(context.Context, unit) (unit, error) {
		return unit{}, lwt.Shutdown(context.Background())
	}))
	// Shutdown under a deadline, from a call that is itself in flight (so
	// the grace period lasts until the deadline): it returns once the
	// shutdown has ended, its calls rejected. What it saw goes to lastErr
	// (not a Post's outcome: OCaml may have started a new bridge since).
	must(lwt.Register("test.shutdown_self_by", func(_ context.Context, ms int64) (unit, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(ms)*time.Millisecond)
		defer cancel()
		err := lwt.Shutdown(ctx)
		lastErr.Store(fmt.Sprintf("shutdown: %v; calls in flight: %d", err, lwt.CurrentStats().Calls))
		return unit{}, err
	}))
	// A sync function, which holds the Lwt thread until both Shutdowns and
	// the Post are queued: none of them can then reach the bridge that
	// OCaml starts again after this one closes.
	must(lwt.RegisterSync("test.two_shutdowns", func(unit) (unit, error) {
		defer func() {
			for deadline := time.Now().Add(2 * time.Second); lwt.CurrentStats().Jobs < 3 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
		}()
		go func() {
			errs := make(chan error, 2)
			posted := make(chan bool, 1)
			for range 2 {
				go func() { errs <- lwt.Shutdown(context.Background()) }()
			}
			postErr := lwt.Post(func() { posted <- true })
			e1, e2 := <-errs, <-errs
			ran := postErr != nil
			select {
			case ran = <-posted:
			default:
			}
			lastErr.Store(fmt.Sprintf("%v %v posted job ran or refused: %v", e1, e2, ran))
		}()
		return unit{}, nil
	}))
	// A sync function that blocks the Lwt thread: the watchdog reports it.
	must(lwt.RegisterSync("test.block", func(ms int64) (unit, error) {
		time.Sleep(time.Duration(ms) * time.Millisecond)
		return unit{}, nil
	}))
	must(lwt.Register("test.fail", func(_ context.Context, msg string) (unit, error) {
		return unit{}, errors.New(msg)
	}))
	must(lwt.Register("test.wait_cancel", func(ctx context.Context, _ unit) (unit, error) {
		<-ctx.Done()
		cancelled.Add(1)
		return unit{}, ctx.Err()
	}))
	must(lwt.RegisterSync("test.cancelled", func(unit) (int64, error) { return cancelled.Load(), nil }))
	// Calls whose error is their context's, at shutdown: a goroutine, and a
	// Go promise that never settles (OCaml awaits it through a loop task).
	must(lwt.Register("test.until_cancelled", func(ctx context.Context, _ unit) (unit, error) {
		<-ctx.Done()
		return unit{}, ctx.Err()
	}))
	must(lwt.RegisterSync("test.never_settled", func(unit) (*lwt.Promise[string], error) {
		p, _ := lwt.NewPromise[string]()
		return p, nil
	}))
	// Await an OCaml call under a 20 ms deadline: the Lwt promise is cancelled.
	awaitTimeout := func(ctx context.Context, f *lwt.Func[unit, unit]) (string, error) {
		defer f.Release()
		ctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err := f.Call(ctx, unit{})
		return fmt.Sprint(err), nil
	}
	must(lwt.RegisterTask("test.task_await_timeout", awaitTimeout))
	must(lwt.Register("test.goroutine_await_timeout", awaitTimeout))
	// Await an OCaml call under the task's own context, which OCaml cancels.
	must(lwt.RegisterTask("test.task_await_own", func(ctx context.Context, f *lwt.Func[unit, unit]) (unit, error) {
		defer f.Release()
		return f.Call(ctx, unit{})
	}))
	must(lwt.RegisterSync("test.stats", func(unit) (string, error) {
		return fmt.Sprintf("%+v", lwt.CurrentStats()), nil
	}))
}

func lookupNamed() (tenfold *lwt.Func[int64, int64], upper *lwt.Func[string, string], err error) {
	if tenfold, err = lwt.Lookup[int64, int64]("ocaml.tenfold"); err == nil {
		upper, err = lwt.Lookup[string, string]("ocaml.upper")
	}
	return tenfold, upper, err
}

func main() {}
