package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
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
	// Go's live heap objects, after a GC (and the cleanups it runs).
	must(lwt.RegisterSync("rel.go_heap_objects", func(struct{}) (int64, error) {
		runtime.GC()
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return int64(m.HeapObjects), nil
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

	// Chaos, the other way: OCaml calls each kind of Go function in random
	// interleavings (test_reliability.ml's test_chaos_from_ocaml).
	must(lwt.Register("rel.chaos_goroutine", chaosAnswer))
	must(lwt.RegisterTask("rel.chaos_task", chaosAnswer))
	must(lwt.RegisterSync("rel.chaos_sync", func(arg int64) (int64, error) { return chaosAnswer(context.Background(), arg) }))

	// Chaos: loop tasks and goroutines call OCaml's chaos_f
	// (test_reliability.ml) in random interleavings; reports the wrong
	// outcomes, or how many calls were settled and how many cut short.
	must(lwt.RegisterTask("rel.chaos", lwt.Fn2(func(ctx context.Context, f *lwt.Func[int64, int64], seed int64) (string, error) {
		defer f.Release()
		return runChaos(ctx, f, uint64(seed))
	})))
}

// chaosKinds is how many kinds of answer chaos_f gives: a call's argument
// is n*chaosKinds + kind.
const chaosKinds = 10

// chaos checks the outcomes of the calls that its tasks and goroutines
// make.
type chaos struct {
	f                 *lwt.Func[int64, int64]
	mu                sync.Mutex
	calls             int64
	wrong             []string
	settled, cutShort int
}

// The workers (loop tasks and goroutines), the steps each makes, and how
// deep a step may make steps of its own.
const (
	chaosTasks, chaosGoroutines = 6, 3
	chaosSteps                  = 1000
	chaosDepth                  = 3
)

func runChaos(ctx context.Context, f *lwt.Func[int64, int64], seed uint64) (string, error) {
	c := &chaos{f: f}
	rng := rand.New(rand.NewPCG(seed, 1))
	var workers []*lwt.Promise[struct{}]
	for range chaosTasks {
		wrng := rand.New(rand.NewPCG(rng.Uint64(), 2))
		workers = append(workers, lwt.Spawn(ctx, func(ctx context.Context) (struct{}, error) {
			for range chaosSteps {
				c.step(ctx, wrng, 0)
			}
			return struct{}{}, nil
		}))
	}
	for range chaosGoroutines {
		grng := rand.New(rand.NewPCG(rng.Uint64(), 3))
		p, r := lwt.NewPromise[struct{}]()
		workers = append(workers, p)
		go func() {
			defer r.Resolve(struct{}{})
			for range chaosSteps {
				kind, n, cctx, cancel := c.plan(ctx, grng)
				v, err := c.f.Call(cctx, n*chaosKinds+kind)
				ended := cctx.Err() // before cancel ends it
				cancel()
				c.check(kind, n, v, err, ended)
			}
		}()
	}
	// A task left waiting (a call never settled, a wake-up lost) fails the
	// test instead of hanging it.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stuck error
	for _, w := range workers {
		if _, err := w.Await(wctx); err != nil {
			stuck = err
			break
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if stuck != nil {
		return "", fmt.Errorf("a worker: %w (%d calls made, %d settled)", stuck, c.calls, c.settled)
	}
	if len(c.wrong) > 0 {
		return "", fmt.Errorf("%d wrong outcomes of %d calls: %s", len(c.wrong), c.calls, strings.Join(c.wrong[:min(len(c.wrong), 5)], "; "))
	}
	return fmt.Sprintf("%d %d", c.settled, c.cutShort), nil
}

// plan picks a call: its kind, its number, and a context that may end
// before OCaml answers (always for kind 9, which only that settles).
func (c *chaos) plan(ctx context.Context, rng *rand.Rand) (kind, n int64, cctx context.Context, cancel context.CancelFunc) {
	kind, n = c.pick(rng)
	switch r := rng.IntN(4); {
	case kind == 9 || r == 0:
		cctx, cancel = context.WithTimeout(ctx, time.Duration(rng.IntN(300))*time.Microsecond)
	case r == 1:
		cctx, cancel = context.WithCancel(ctx)
		if lwt.Post(cancel) != nil { // ends it once the loop next runs Go's jobs
			cancel()
		}
	default:
		cctx, cancel = ctx, func() {}
	}
	return kind, n, cctx, cancel
}

// pick picks a call's kind and numbers it.
func (c *chaos) pick(rng *rand.Rand) (kind, n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	return rng.Int64N(chaosKinds), c.calls
}

// step makes one call from a loop task, in one of the ways a task can:
// Call, a promise awaited, a promise two tasks await and then each call
// again at once, a Then callback, or a goroutine's Call.
func (c *chaos) step(ctx context.Context, rng *rand.Rand, depth int) {
	kind, n, cctx, cancel := c.plan(ctx, rng)
	defer cancel()
	arg := n*chaosKinds + kind
	switch way := rng.IntN(6); {
	case way == 0:
		v, err := c.f.Call(cctx, arg)
		c.check(kind, n, v, err, cctx.Err())
	case way == 1:
		v, err := c.f.Go(cctx, arg).Await(ctx)
		c.check(kind, n, v, err, cctx.Err())
	case way == 2 && depth < chaosDepth:
		p := c.f.Go(cctx, arg)
		orng := rand.New(rand.NewPCG(rng.Uint64(), 4))
		other := lwt.Spawn(ctx, func(ctx context.Context) (struct{}, error) {
			v, err := p.Await(ctx)
			c.check(kind, n, v, err, cctx.Err())
			c.step(ctx, orng, depth+1)
			return struct{}{}, nil
		})
		v, err := p.Await(ctx)
		c.check(kind, n, v, err, cctx.Err())
		c.step(ctx, rng, depth+1)
		if _, err := other.Await(ctx); err != nil {
			c.fail("the other task: %v", err)
		}
	case way == 3:
		done := lwt.Then(c.f.Go(cctx, arg), func(v int64, err error) (struct{}, error) {
			c.check(kind, n, v, err, cctx.Err())
			return struct{}{}, nil
		})
		if _, err := done.Await(ctx); err != nil {
			c.fail("a Then callback: %v", err)
		}
	case way == 4 && depth < chaosDepth:
		// A task whose own context ends while its calls wait: it cancels
		// them (one Lwt.cancel may settle another).
		tctx, tcancel := context.WithTimeout(ctx, time.Duration(rng.IntN(500))*time.Microsecond)
		defer tcancel()
		trng := rand.New(rand.NewPCG(rng.Uint64(), 5))
		sub := lwt.Spawn(tctx, func(tctx context.Context) (struct{}, error) {
			mine := c.f.Go(tctx, arg) // the call planned above, under the task's own context
			_, n2 := c.pick(trng)
			shared := c.f.Go(tctx, n2*chaosKinds+7) // one OCaml promise behind it and others
			for range 1 + trng.IntN(3) {
				kind, n := c.pick(trng)
				v, err := c.f.Call(tctx, n*chaosKinds+kind)
				c.check(kind, n, v, err, tctx.Err())
			}
			v, err := mine.Await(tctx)
			c.check(kind, n, v, err, tctx.Err())
			v, err = shared.Await(tctx)
			c.check(7, n2, v, err, tctx.Err())
			return struct{}{}, nil
		})
		if _, err := sub.Await(ctx); err != nil {
			c.fail("a task with a context of its own: %v", err)
		}
	default:
		p, r := lwt.NewPromise[struct{}]()
		go func() {
			defer r.Resolve(struct{}{})
			v, err := c.f.Call(cctx, arg)
			c.check(kind, n, v, err, cctx.Err())
		}()
		if _, err := p.Await(ctx); err != nil {
			c.fail("a goroutine: %v", err)
		}
	}
}

// check records the outcome of call n, of the given kind; ended is its
// context's error when the outcome arrived. A call cut short by its own
// context fails with that context's error, not with OCaml's Lwt.Canceled
// (which also satisfies errors.Is(err, context.Canceled)): that exception
// is an answer only for kind 7, whose promise another call's cancellation
// may cancel.
func (c *chaos) check(kind, n, v int64, err error, ended error) {
	var e *lwt.OCamlError
	fromOCaml := errors.As(err, &e)
	switch {
	case ended != nil && !fromOCaml && errors.Is(err, ended):
		c.mu.Lock()
		c.cutShort++
		c.mu.Unlock()
		return
	case kind == 9:
		c.fail("call %d (kind 9, which only its context's end settles): %d, %v", n, v, err)
	case kind == 7 && fromOCaml && e.Name == "Lwt.Canceled":
		// Another call's cancellation cancelled the promise they share.
	case kind >= 2 && kind <= 4:
		if !fromOCaml || !strings.Contains(e.Error(), fmt.Sprintf("%q", fmt.Sprintf("chaos %d", n))) {
			c.fail("call %d (kind %d): %d, %v; want OCaml's exception naming it", n, kind, v, err)
		}
	case err != nil || v != n+1:
		c.fail("call %d (kind %d): %d, %v; want %d", n, kind, v, err, n+1)
	}
	c.mu.Lock()
	c.settled++
	c.mu.Unlock()
}

func (c *chaos) fail(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wrong = append(c.wrong, fmt.Sprintf(format, args...))
}

// chaosAnswer answers OCaml's call n*8 + kind: n + 1 at once (0), an
// error (1) or a panic (2) naming n, n + 1 from OCaml's add1 (3), n + 1
// after a timer (4), or nothing until its context ends (5); or the answer
// of a call back into OCaml that answers after a timer (6) or only when
// cancelled (7). Kinds 5 to 7 are not for a sync function, whose context
// never ends and which cannot wait.
func chaosAnswer(ctx context.Context, arg int64) (int64, error) {
	n, kind := arg/8, arg%8
	switch kind {
	case 0:
		return n + 1, nil
	case 1:
		return 0, fmt.Errorf("chaos %d", n)
	case 2:
		panic(fmt.Sprintf("chaos %d", n))
	case 3, 6, 7:
		name := map[int64]string{3: "rel.ocaml_add1", 6: "rel.ocaml_later", 7: "rel.ocaml_never"}[kind]
		f, err := lwt.Lookup[int64, int64](name)
		if err != nil {
			return 0, err
		}
		return f.Call(ctx, n)
	case 4:
		p, r := lwt.NewPromise[int64]()
		time.AfterFunc(time.Duration(n%300)*time.Microsecond, func() { r.Resolve(n + 1) })
		return p.Await(ctx)
	case 5:
		never, _ := lwt.NewPromise[int64]()
		return never.Await(ctx)
	}
	return 0, fmt.Errorf("chaos %d: no kind %d", n, kind)
}
