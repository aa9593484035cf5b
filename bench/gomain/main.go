// Command gomain is the Go half of make bench: built with -buildmode=c-archive
// and linked into bench/bench.exe, whose OCaml side drives every figure.
//
// The functions that measure in Go run for the duration OCaml last set with
// bench.run_for and return "ops elapsed_ns mallocs": the operations made,
// the time they took, and the Go heap allocations made meanwhile by the
// whole process (runtime.MemStats.Mallocs).
package main

import "C" // a c-archive needs cgo

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"lwt"
)

type unit = struct{}

// many is how many goroutines call OCaml at once in bench.call.goroutines.
const many = 1000

// runFor is how long the next measuring function runs, in nanoseconds.
var runFor atomic.Int64

// measure runs loop until the deadline it is given and reports the
// operations loop made, the time taken and the Go allocations meanwhile.
func measure(loop func(deadline time.Time) (int64, error)) (string, error) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	ops, err := loop(start.Add(time.Duration(runFor.Load())))
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %d %d", ops, elapsed.Nanoseconds(), after.Mallocs-before.Mallocs), nil
}

// until calls step until the deadline, reading the clock every batch calls,
// and returns the number of calls.
func until(deadline time.Time, batch int, step func() error) (int64, error) {
	var n int64
	for time.Now().Before(deadline) {
		for range batch {
			if err := step(); err != nil {
				return n, err
			}
		}
		n += int64(batch)
	}
	return n, nil
}

// callLoop calls the OCaml function f in sequence; registered as a loop
// task (Call suspends the task while OCaml's promise is pending) and as a
// goroutine (Call posts each call to the Lwt thread and blocks).
func callLoop[T any](ctx context.Context, f *lwt.Func[T, T]) (string, error) {
	defer f.Release()
	var arg T
	// Warm-up, unmeasured: the first call makes the Func's reusable call
	// record and grows the task's slices.
	if _, err := f.Call(ctx, arg); err != nil {
		return "", err
	}
	return measure(func(deadline time.Time) (int64, error) {
		return until(deadline, 64, func() error {
			_, err := f.Call(ctx, arg)
			return err
		})
	})
}

// callMany is callLoop from many goroutines at once.
func callMany(ctx context.Context, f *lwt.Func[int64, int64]) (string, error) {
	defer f.Release()
	return measure(func(deadline time.Time) (int64, error) {
		var (
			wg    sync.WaitGroup
			total atomic.Int64
			errc  = make(chan error, many)
		)
		for range many {
			wg.Go(func() {
				// Every call waits behind the others: read the clock each time.
				n, err := until(deadline, 1, func() error {
					_, err := f.Call(ctx, 1)
					return err
				})
				total.Add(n)
				if err != nil {
					errc <- err
				}
			})
		}
		wg.Wait()
		close(errc)
		return total.Load(), <-errc // nil when no goroutine failed
	})
}

// coroutineSwitch measures the runtime coroutine switch that loop tasks are
// made of (iter.Pull, as executor.go uses it), in a sync function: on the
// Lwt thread inside a call from OCaml, where tasks run too. Each next is two
// switches, into the coroutine and back; ops counts switches.
func coroutineSwitch(unit) (string, error) {
	next, stop := iter.Pull(func(yield func(unit) bool) {
		for yield(unit{}) {
		}
	})
	defer stop()
	return measure(func(deadline time.Time) (int64, error) {
		n, err := until(deadline, 64, func() error {
			next()
			return nil
		})
		return 2 * n, err
	})
}

// notifierWake measures the system calls of one wake of the library's
// eventfd notifier (notify_linux.go, unexported): the poster's 8-byte write
// and the Lwt thread's drain, here both on the Lwt thread and on a private
// eventfd made the same way. It leaves out the wake-up of a sleeping thread,
// which limit/eventfd-pingpong measures.
func notifierWake(unit) (string, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	one := binary.NativeEndian.AppendUint64(nil, 1)
	var buf [8]byte
	return measure(func(deadline time.Time) (int64, error) {
		return until(deadline, 64, func() error {
			if _, err := unix.Write(fd, one); err != nil {
				return err
			}
			_, err := unix.Read(fd, buf[:])
			return err
		})
	})
}

var sink atomic.Uint64

// burn keeps every P busy for secs seconds with goroutines that compute and
// never block, so that only Go's preemption takes a P from them.
func burn(_ context.Context, secs float64) (unit, error) {
	return burning(secs, runtime.GOMAXPROCS(0), false)
}

// burnYielding is burn with a runtime.Gosched() every ~50 us of work: the
// first mitigation of the latency hazard.
func burnYielding(_ context.Context, secs float64) (unit, error) {
	return burning(secs, runtime.GOMAXPROCS(0), true)
}

// burnComputed is burn with each goroutine's work in lwt.Compute: the
// second mitigation, which leaves a P free for the Lwt thread and the
// goroutines of its calls (here one goroutine waits for a slot, then burns
// what time is left).
func burnComputed(ctx context.Context, secs float64) (unit, error) {
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			lwt.Compute(ctx, func() (unit, error) { return burning(time.Until(deadline).Seconds(), 1, false) })
		})
	}
	wg.Wait()
	return unit{}, nil
}

func burning(secs float64, goroutines int, yield bool) (unit, error) {
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			x := uint64(1)
			for time.Now().Before(deadline) {
				for range 1 << 16 {
					x = x*6364136223846793005 + 1442695040888963407
				}
				if yield {
					runtime.Gosched()
				}
			}
			sink.Add(x)
		})
	}
	wg.Wait()
	return unit{}, nil
}

// benchAdd1 is called from C by bench_stubs.c: a call from OCaml into Go
// that does nothing else, the baseline of raw/ocaml-to-go-sync-call.
//
//export benchAdd1
func benchAdd1(n C.long) C.long { return n + 1 }

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

func init() {
	must(lwt.RegisterSync("bench.run_for", func(secs float64) (unit, error) {
		runFor.Store(int64(secs * float64(time.Second)))
		return unit{}, nil
	}))

	// OCaml calls Go.
	echo := func(_ context.Context, n int64) (int64, error) { return n, nil }
	must(lwt.Register("bench.echo.goroutine", echo))
	must(lwt.RegisterTask("bench.echo.task", echo))
	must(lwt.RegisterSync("bench.echo.sync", func(n int64) (int64, error) { return n, nil }))
	must(lwt.RegisterSync("bench.add1", func(n int64) (int64, error) { return n + 1, nil }))
	registerValues()
	registerStreams()
	registerApp()

	// Go calls OCaml.
	must(lwt.RegisterTask("bench.call.task", callLoop[int64]))
	must(lwt.Register("bench.call.goroutine", callLoop[int64]))
	must(lwt.Register("bench.call.goroutines", callMany))
	must(lwt.RegisterTask("bench.call_unit.task", callLoop[unit]))
	must(lwt.Register("bench.call_unit.goroutine", callLoop[unit]))

	// Raw costs and load.
	must(lwt.RegisterSync("bench.coroutine_switch", coroutineSwitch))
	must(lwt.RegisterSync("bench.notifier_wake", notifierWake))
	must(lwt.RegisterSync("bench.cgo_call", cgoCall))
	must(lwt.Register("bench.burn", burn))
	must(lwt.Register("bench.burn_yielding", burnYielding))
	must(lwt.Register("bench.burn_computed", burnComputed))
}

func main() {}
