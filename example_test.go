package lwt_test

// The examples without an Output comment need an OCaml program around
// them (they run in test/gomain/main.go and examples/); go test compiles
// them. The others run here.

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
	if err != nil {
		panic(err)
	}
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
	if err != nil {
		panic(err)
	}
}

// A sync function runs directly on the Lwt thread: OCaml calls it with
// Lwt_interop.bind_sync and gets the result at once.
func ExampleRegisterSync() {
	err := lwt.RegisterSync("add1", func(n int64) (int64, error) { return n + 1, nil })
	if err != nil {
		panic(err)
	}
}

// Go calls an OCaml function that OCaml registered by name
// (Lwt_interop.register "tenfold" Ty.int Ty.int ...).
func ExampleLookup() {
	tenfold, err := lwt.Lookup[int64, int64]("tenfold")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, err := tenfold.Call(ctx, 4) // from a goroutine: blocks until the Lwt promise settles
	fmt.Println(n, err)
}

// Go starts several OCaml calls at once and awaits them later.
func ExampleFunc_Go() {
	tenfold, err := lwt.Lookup[int64, int64]("tenfold")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	var ps []*lwt.Promise[int64]
	for i := range int64(3) {
		ps = append(ps, tenfold.Go(ctx, i))
	}
	for _, p := range ps {
		fmt.Println(p.Await(ctx))
	}
}

// A goroutine runs a loop task, which may await OCaml without a thread
// hop per call, and waits for its result.
func ExampleSpawn() {
	tenfold, err := lwt.Lookup[int64, int64]("tenfold")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	sum, err := lwt.Spawn(ctx, func(ctx context.Context) (int64, error) {
		var sum int64
		for i := range int64(100) {
			n, err := tenfold.Call(ctx, i)
			if err != nil {
				return 0, err
			}
			sum += n
		}
		return sum, nil
	}).Await(ctx)
	fmt.Println(sum, err)
}

// Post runs code on the Lwt thread, fire-and-forget.
func ExamplePost() {
	if err := lwt.Post(func() { fmt.Println("on the Lwt thread") }); err != nil {
		fmt.Println(err)
	}
}

// OnLoop runs code on the Lwt thread and returns a promise of its result.
func ExampleOnLoop() {
	n, err := lwt.OnLoop(func() (int, error) { return 42, nil }).Await(context.Background())
	fmt.Println(n, err)
}

// Shutdown from Go gives the Go calls in flight a second to answer their
// cancelled contexts.
func ExampleShutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := lwt.Shutdown(ctx); err != nil {
		fmt.Println(err)
	}
}

type conn struct{ addr string }

// A Go value that OCaml holds as an opaque 'a Lwt_interop.handle.
func ExampleHandle() {
	err := lwt.RegisterSync("dial", func(addr string) (lwt.Handle[*conn], error) {
		return lwt.Handle[*conn]{Value: &conn{addr}}, nil
	})
	if err != nil {
		panic(err)
	}
	err = lwt.RegisterSync("addr", func(c lwt.Handle[*conn]) (string, error) { return c.Value.addr, nil })
	if err != nil {
		panic(err)
	}
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
	if err != nil {
		panic(err)
	}
	err = lwt.RegisterSync("kept", func(struct{}) (*lwt.Value, error) { return kept, nil })
	if err != nil {
		panic(err)
	}
}

// Then runs a callback on the Lwt thread once the promise settles.
func ExamplePromise_Then() {
	p, r := lwt.NewPromise[string]()
	if err := p.Then(func(s string, err error) { fmt.Println("settled:", s, err) }); err != nil {
		fmt.Println(err) // no bridge running
	}
	r.Resolve("yes")
}

func ExampleCurrentStats() {
	s := lwt.CurrentStats()
	fmt.Printf("roots=%d handles=%d jobs=%d tasks=%d calls=%d\n", s.Roots, s.Handles, s.Jobs, s.Tasks, s.Calls)
}
