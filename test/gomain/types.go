package main

// The Go side of test/types.ml: every kind of value, both ways.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"lwt"
)

type Shape interface{ isShape() }

type (
	Circle   struct{ R float64 }
	Rect     struct{ W, H float64 }
	Empty    struct{}
	Labelled struct {
		Label  string
		Points []int64
	}
)

func (Circle) isShape()    {}
func (Rect) isShape()      {}
func (Empty) isShape()     {}
func (*Labelled) isShape() {}

type UserID int64

// User is test/types.ml's user record.
type User struct {
	ID      UserID
	Name    string
	Score   float64
	Tags    []string
	Email   *string
	Small   int32
	Big     int64
	Initial byte
	Shapes  []Shape
	Status  lwt.Result[int64, string]
	Where   lwt.Tuple3[int, string, bool]
	Raw     []byte
	Unit    struct{}
	Scores  []float64      `lwt:"scores"`
	Cache   map[string]int `lwt:"-"`
}

// describe spells u's fields in Go's terms, for OCaml to check which field
// went where.
func describe(u User) string {
	email := "<nil>"
	if u.Email != nil {
		email = *u.Email
	}
	return fmt.Sprintf("id=%d name=%q score=%g tags=%q email=%q small=%d big=%d initial=%d shapes=%s status=%+v where=%+v raw=%v scores=%v",
		u.ID, u.Name, u.Score, u.Tags, email, u.Small, u.Big, u.Initial, shapes(u.Shapes), u.Status, u.Where, u.Raw, u.Scores)
}

func shapes(s []Shape) string {
	out := "["
	for _, x := range s {
		if l, ok := x.(*Labelled); ok {
			out += fmt.Sprintf("&%+v ", *l)
		} else {
			out += fmt.Sprintf("%T%+v ", x, x)
		}
	}
	return out + "]"
}

func echo[T any](x T) (T, error) { return x, nil }

func init() {
	lwt.MustRegisterVariant[Shape](Circle{}, Rect{}, Empty{}, &Labelled{})
	lwt.MustRegisterSync("types.echo_user", echo[User])
	lwt.MustRegister("types.echo_users", func(_ context.Context, u []User) ([]User, error) { return u, nil })
	lwt.MustRegisterSync("types.describe_user", func(u User) (string, error) { return describe(u), nil })
	lwt.MustRegisterSync("types.make_user", func(struct{}) (User, error) {
		mail := "g@o"
		return User{ID: 7, Name: "gopher", Score: 0.25, Tags: []string{"go"}, Email: &mail, Small: -2, Big: 1 << 62,
			Initial: 'G', Shapes: []Shape{Rect{W: 1, H: 2}, &Labelled{Label: "p", Points: []int64{3}}, Empty{}},
			Status: lwt.Result[int64, string]{Ok: 5}, Where: lwt.Tuple3[int, string, bool]{First: 1, Second: "x", Third: true},
			Raw: []byte("r"), Scores: []float64{1, 2}}, nil
	})
	lwt.MustRegisterSync("types.echo_shape", echo[Shape])
	lwt.MustRegister("types.echo_shape_async", func(_ context.Context, s Shape) (Shape, error) { return s, nil })
	lwt.MustRegisterSync("types.echo_char", echo[byte])
	lwt.MustRegisterSync("types.echo_id", echo[UserID])
	lwt.MustRegisterSync("types.echo_scalars", echo[lwt.Tuple4[int32, int64, byte, []float64]])
	lwt.MustRegisterSync("types.echo_results", echo[[]lwt.Result[*string, []Shape]])
	lwt.MustRegisterSync("types.echo_deep", echo[[][][][][][][][]int64])
	lwt.MustRegisterSync("types.echo_options", echo[**int64])
	// Go functions as values: a Callback of each kind, adding n.
	lwt.MustRegisterSync("callbacks.adder", func(k lwt.Pair[string, int64]) (*lwt.Callback[int64, int64], error) {
		n := k.Second
		switch k.First {
		case "goroutine":
			return lwt.NewCallback(func(_ context.Context, x int64) (int64, error) { return x + n, nil }), nil
		case "task":
			// A task may await OCaml: it asks OCaml's types.ocaml_double first.
			return lwt.TaskCallback(func(ctx context.Context, x int64) (int64, error) {
				double, err := lwt.Lookup[int64, int64]("types.ocaml_double")
				if err != nil {
					return 0, err
				}
				d, err := double.Call(ctx, x)
				return d + n, err
			}), nil
		case "sync":
			return lwt.SyncCallback(func(x int64) (int64, error) {
				if x < 0 {
					return 0, fmt.Errorf("negative: %d", x)
				}
				return x + n, nil
			}), nil
		}
		return nil, nil // a nil Callback: an error when it crosses
	})
	// A Callback that waits for its context to end, and reports it.
	lwt.MustRegisterSync("callbacks.waiter", func(struct{}) (*lwt.Callback[struct{}, string], error) {
		return lwt.NewCallback(func(ctx context.Context, _ struct{}) (string, error) {
			<-ctx.Done()
			lastErr.Store("callback: " + ctx.Err().Error())
			return "", ctx.Err()
		}), nil
	})
	// Go calls an OCaml plain function, from a sync function.
	lwt.MustRegisterSync("callbacks.apply_sync", func(f *lwt.Func[int64, int64]) (int64, error) {
		defer f.Release()
		return f.Call(context.Background(), 20)
	})
	// Go calls an OCaml closure with a Go closure.
	lwt.MustRegisterTask("callbacks.hand_over", func(ctx context.Context, f *lwt.Func[*lwt.Callback[int64, int64], int64]) (int64, error) {
		defer f.Release()
		return f.Call(ctx, lwt.NewCallback(func(_ context.Context, x int64) (int64, error) { return x * 3, nil }))
	})
	// Promises as values: Go awaits OCaml's, and OCaml awaits Go's.
	lwt.MustRegisterTask("promises.await", func(ctx context.Context, p *lwt.Promise[int64]) (string, error) {
		n, err := p.Await(ctx)
		return fmt.Sprint(n+1, " ", err), nil
	})
	lwt.MustRegisterTask("promises.cancel", func(ctx context.Context, p *lwt.Promise[int64]) (string, error) {
		p.Cancel()
		_, err := p.Await(ctx)
		return fmt.Sprint(err, " canceled=", errors.Is(err, context.Canceled)), nil
	})
	lwt.MustRegisterSync("promises.later", func(s string) (*lwt.Promise[string], error) {
		p, r := lwt.NewPromise[string]()
		go func() {
			time.Sleep(10 * time.Millisecond)
			r.Resolve(s + "!")
		}()
		return p, nil
	})
	lwt.MustRegisterSync("promises.failed", func(struct{}) (*lwt.Promise[string], error) {
		return lwt.Rejected[string](errNotFound), nil
	})
	// A Go promise of a call into OCaml that never answers: OCaml's
	// Lwt.cancel of it cancels the call, and so OCaml's own promise.
	lwt.MustRegisterSync("promises.of_call", func(struct{}) (*lwt.Promise[int64], error) {
		f, err := lwt.Lookup[struct{}, int64]("types.never")
		if err != nil {
			return nil, err
		}
		return f.Go(context.Background(), struct{}{}), nil
	})
	// Functions of several arguments, each kind, with closures and promises
	// among them.
	lwt.MustRegisterSync("args.describe", lwt.SyncFn3(func(n int64, s string, b bool) (string, error) {
		return fmt.Sprintf("%d %q %v", n, s, b), nil
	}))
	lwt.MustRegister("args.join", lwt.Fn2(func(_ context.Context, sep string, parts []string) (string, error) {
		return strings.Join(parts, sep), nil
	}))
	lwt.MustRegisterTask("args.apply", lwt.Fn2(func(ctx context.Context, f *lwt.Func[int64, int64], n int64) (int64, error) {
		defer f.Release()
		return f.Call(ctx, n)
	}))
	lwt.MustRegisterTask("args.sum", lwt.Fn4(func(ctx context.Context, p, q *lwt.Promise[int64], u User, k UserID) (int64, error) {
		a, err := p.Await(ctx)
		if err != nil {
			return 0, err
		}
		b, err := q.Await(ctx)
		return a + b + int64(u.ID) + int64(k), err
	}))
	lwt.MustRegisterTask("args.call_ocaml", func(ctx context.Context, _ struct{}) (string, error) {
		f, err := lwt.Lookup[lwt.Args3[int64, string, []int64], string]("args.ocaml_show")
		if err != nil {
			return "", err
		}
		return f.Call(ctx, lwt.Args3[int64, string, []int64]{First: 1, Second: "two", Third: []int64{3, 4}})
	})
	// Go calls OCaml's echo of a user it built, and checks what comes back.
	lwt.MustRegisterTask("types.ocaml_echoes", func(ctx context.Context, _ struct{}) (string, error) {
		f, err := lwt.Lookup[User, User]("types.ocaml_echo_user")
		if err != nil {
			return "", err
		}
		mail := "\x00"
		in := User{ID: -1, Name: "n\x00", Tags: []string{}, Email: &mail, Shapes: []Shape{Circle{R: -1}},
			Status: lwt.Result[int64, string]{Error: "e", IsError: true}, Raw: []byte{}, Scores: []float64{}}
		out, err := f.Call(ctx, in)
		if err != nil {
			return "", err
		}
		if !reflect.DeepEqual(in, out) {
			return fmt.Sprintf("sent %s\ngot  %s", describe(in), describe(out)), nil
		}
		return "same", nil
	})
}
