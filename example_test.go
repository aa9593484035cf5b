package lwt_test

// Every example runs: those that use the Lwt thread run on a simulated one
// (Simulate); those that register Go functions for OCaml check the
// registration, and test/gomain and examples/ make the same calls from a
// real OCaml program. Those that call OCaml show the error a program gets
// when OCaml did not register the function.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"lwt"
)

// A Go function OCaml binds with Lwt_interop.bind "sha256" Ty.string
// Ty.string: each call runs in a new goroutine.
func ExampleRegister() {
	err := lwt.Register("sha256", func(ctx context.Context, s string) (string, error) {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:]), nil
	})
	fmt.Println(err)
	// Output: <nil>
}

// A loop task runs on the Lwt thread and may await OCaml: here it calls an
// OCaml closure (Ty.func Ty.int Ty.int) n times, feeding it its own result.
func ExampleRegisterTask() {
	err := lwt.RegisterTask("iterate", func(ctx context.Context, f *lwt.Func[int64, int64]) (int64, error) {
		defer f.Release()
		x := int64(0)
		for range 10 {
			var err error
			if x, err = f.Call(ctx, x); err != nil {
				return 0, err
			}
		}
		return x, nil
	})
	fmt.Println(err)
	// Output: <nil>
}

// A sync function runs directly on the Lwt thread: OCaml calls it with
// Lwt_interop.bind_sync and gets the result at once.
func ExampleRegisterSync() {
	err := lwt.RegisterSync("add1", func(n int64) (int64, error) { return n + 1, nil })
	fmt.Println(err)
	// Output: <nil>
}

// Go calls an OCaml function that OCaml registered by name
// (Lwt_interop.register "tenfold" Ty.int Ty.int ...). Here no OCaml
// program registered it.
func ExampleLookup() {
	stop, _ := lwt.Simulate()
	defer stop()
	tenfold, err := lwt.Lookup[int64, int64]("tenfold")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := tenfold.Call(ctx, 4) // from a goroutine: blocks until the Lwt promise settles
	fmt.Println(n, err)
	// Output: lwt: no OCaml function registered as "tenfold"
}

// Go starts several OCaml calls at once and awaits them later. Here, with
// no OCaml program, Lookup says so.
func ExampleFunc_Go() {
	stop, _ := lwt.Simulate()
	defer stop()
	tenfold, err := lwt.Lookup[int64, int64]("tenfold")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	var ps []*lwt.Promise[int64]
	for i := range int64(3) {
		ps = append(ps, tenfold.Go(ctx, i))
	}
	for _, p := range ps {
		fmt.Println(p.Await(ctx))
	}
	// Output: lwt: no OCaml function registered as "tenfold"
}

// A goroutine runs a loop task, which awaits promises on the Lwt thread
// (here ones that goroutines settle; OCaml calls, with Func.Call, alike)
// without a thread hop each, and waits for its result.
func ExampleSpawn() {
	stop, _ := lwt.Simulate()
	defer stop()
	ctx := context.Background()
	sum, err := lwt.Spawn(ctx, func(ctx context.Context) (int64, error) {
		var sum int64
		for i := range int64(100) {
			p, r := lwt.NewPromise[int64]()
			go r.Resolve(10 * i)
			n, err := p.Await(ctx) // suspends the task: the Lwt loop runs meanwhile
			if err != nil {
				return 0, err
			}
			sum += n
		}
		return sum, nil
	}).Await(ctx)
	fmt.Println(sum, err)
	// Output: 49500 <nil>
}

// Post runs code on the Lwt thread, fire-and-forget.
func ExamplePost() {
	stop, _ := lwt.Simulate()
	ran := make(chan struct{})
	if err := lwt.Post(func() { fmt.Println("on the Lwt thread"); close(ran) }); err != nil {
		fmt.Println(err)
	}
	<-ran
	stop()
	fmt.Println(lwt.Post(func() {}))
	// Output:
	// on the Lwt thread
	// lwt: shut down
}

// OnLoop runs code on the Lwt thread and returns a promise of its result.
func ExampleOnLoop() {
	stop, _ := lwt.Simulate()
	defer stop()
	n, err := lwt.OnLoop(func() (int, error) { return 42, nil }).Await(context.Background())
	fmt.Println(n, err)
	// Output: 42 <nil>
}

// Shutdown from Go gives the Go calls in flight a second to answer their
// cancelled contexts.
func ExampleShutdown() {
	lwt.Simulate()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	fmt.Println(lwt.Shutdown(ctx))
	fmt.Println(lwt.Shutdown(ctx))
	// Output:
	// <nil>
	// lwt: shut down
}

type conn struct{ addr string }

// A Go value that OCaml holds as an opaque 'a Lwt_interop.handle.
func ExampleHandle() {
	err := lwt.RegisterSync("dial", func(addr string) (lwt.Handle[*conn], error) {
		return lwt.Handle[*conn]{Value: &conn{addr}}, nil
	})
	if err == nil {
		err = lwt.RegisterSync("addr", func(c lwt.Handle[*conn]) (string, error) { return c.Value.addr, nil })
	}
	fmt.Println(err)
	// Output: <nil>
}

// A promise settled from Go and awaited by goroutines.
func ExampleNewPromise() {
	p, r := lwt.NewPromise[string]()
	go func() {
		if err := r.Resolve("done"); err != nil {
			panic(err)
		}
	}()
	fmt.Println(p.Await(context.Background()))
	fmt.Println(r.Resolve("again"))
	// Output:
	// done <nil>
	// lwt: promise already settled
}

func ExamplePromise_Result() {
	p := lwt.Rejected[int](errors.New("no"))
	v, err, settled := p.Result()
	fmt.Println(v, err, settled)
	// Output: 0 no true
}

func ExamplePromise_Done() {
	p, r := lwt.NewPromise[int]()
	go r.Resolve(7)
	<-p.Done()
	v, _, _ := p.Result()
	fmt.Println(v)
	// Output: 7
}

// Compound values: an (int option * string) list in OCaml.
func ExamplePair() {
	err := lwt.RegisterSync("names", func(ids []lwt.Pair[*int64, string]) (int64, error) {
		return int64(len(ids)), nil
	})
	fmt.Println(err)
	// Output: <nil>
}

// Go keeps an OCaml value (an Lwt_interop.Opaque.t) and hands it back.
func ExampleValue() {
	var kept *lwt.Value
	err := lwt.RegisterSync("keep", func(v *lwt.Value) (struct{}, error) {
		if kept != nil {
			kept.Release()
		}
		kept = v
		return struct{}{}, nil
	})
	if err == nil {
		err = lwt.RegisterSync("kept", func(struct{}) (*lwt.Value, error) { return kept, nil })
	}
	fmt.Println(err)
	// Output: <nil>
}

// Then runs a function on the Lwt thread once the promise settles, and
// returns a promise of its result: a chain, as Lwt's bind makes.
func ExampleThen() {
	stop, _ := lwt.Simulate()
	defer stop()
	p, r := lwt.NewPromise[string]()
	n := lwt.Then(p, func(s string, err error) (int, error) { return len(s), err })
	r.Resolve("four")
	fmt.Println(n.Await(context.Background()))
	// Output: 4 <nil>
}

func ExampleCurrentStats() {
	stop, _ := lwt.Simulate()
	defer stop()
	p, _ := lwt.NewPromise[int]()
	lwt.Spawn(context.Background(), func(ctx context.Context) (int, error) { return p.Await(ctx) })
	lwt.OnLoop(func() (int, error) { return 0, nil }).Await(context.Background()) // the task has started
	s := lwt.CurrentStats()
	fmt.Printf("roots=%d jobs=%d tasks=%d calls=%d\n", s.Roots, s.Jobs, s.Tasks, s.Calls)
	// Output: roots=0 jobs=0 tasks=1 calls=0
}
